// Numeric script arguments travel packed in one argument. ioredis spends per argument on every
// command (it flattens the argument list with Array.prototype.flat, ~0.2 µs an element here,
// then converts and measures each), and an admission or a turn's joint settle has 30-60
// arguments, most of them numbers. Strings (fields, ids, cache values) stay arguments of their
// own: they may hold any byte. The prelude rebuilds ARGV exactly as the script would have
// received it unpacked, so the scripts' own code is unchanged.

/**
 * ARGV[1]: the numeric arguments joined by ','; ARGV[2]: one letter per argument in order, 'n'
 * (the next number) or 's' (the next of ARGV[3], ARGV[4], ...). Must open the script: the
 * functions after it read the rebuilt ARGV.
 */
export const PACKED_ARGV_LUA = `
local ARGV = (function(packed)
  local nums, n = {}, 0
  for v in string.gmatch(packed[1], '[^,]+') do
    n = n + 1
    nums[n] = v
  end
  local mask, out, ni, si = packed[2], {}, 1, 3
  for i = 1, #mask do
    if string.byte(mask, i) == 110 then
      out[i] = nums[ni]
      ni = ni + 1
    else
      out[i] = packed[si]
      si = si + 1
    end
  end
  return out
end)(ARGV)
`;
