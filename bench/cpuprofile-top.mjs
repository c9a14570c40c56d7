// Summarises V8 .cpuprofile files (node --cpu-prof) by self time: the top functions, and the same
// time grouped by where the code lives (tollgate's dist/, a node_modules package, node internals),
// which is usually the quicker read of "what does a request cost us".
//   node bench/cpuprofile-top.mjs --dir bench/out/run-.../profiles [--top 25]
//   node bench/cpuprofile-top.mjs FILE.cpuprofile
//   node bench/cpuprofile-top.mjs --dir DIR --callers writeUtf8String   (who calls it: self time
//     of the functions whose name contains the text, by their nearest JavaScript callers)
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { positiveInt } from './lib.mjs';

const { values, positionals } = parseArgs({
  options: {
    dir: { type: 'string' },
    top: { type: 'string', default: '25' },
    callers: { type: 'string' },
    depth: { type: 'string', default: '3' },
  },
  allowPositionals: true,
  strict: true,
});
const top = positiveInt('top', values.top);
const depth = positiveInt('depth', values.depth);
const files = [...positionals];
if (values.dir) {
  for (const f of readdirSync(values.dir).sort())
    if (f.endsWith('.cpuprofile')) files.push(join(values.dir, f));
}
if (files.length === 0) {
  process.stderr.write(
    'usage: cpuprofile-top.mjs (--dir DIR | FILE.cpuprofile ...) [--top N] [--callers TEXT [--depth N]]\n',
  );
  process.exit(2);
}

/** Where a function lives, for the grouped view. */
function area(url, name) {
  if (!url) return name.startsWith('(') ? name : '(native/V8)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  const dist = /\/dist\/(.+)$/.exec(url);
  if (dist) return `tollgate ${dist[1].split('/').slice(0, -1).join('/') || dist[1]}`;
  if (url.startsWith('node:')) return 'node core';
  return url;
}

function shortUrl(url) {
  if (!url) return '';
  const nm = /node_modules\/(.+)$/.exec(url);
  if (nm) return nm[1];
  const dist = /\/(dist\/.+)$/.exec(url);
  if (dist) return dist[1];
  return url.replace(/^file:\/\//, '');
}

for (const file of files) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  // timeDeltas[i] is the time since the previous sample: charge it to the node of sample i.
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  }
  let total = 0;
  const fns = new Map();
  const areas = new Map();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    total += us;
    const cf = n.callFrame;
    const name = cf.functionName || '(anonymous)';
    const key = `${name} ${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    const a = area(cf.url, name);
    areas.set(a, (areas.get(a) ?? 0) + us);
  }
  const idle = fns.get('(idle) :0') ?? 0;
  const busy = total - idle;
  const line = (us, label) =>
    `${(us / 1000).toFixed(0).padStart(7)} ms ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${label}`;

  process.stdout.write(
    `${basename(file)}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy ` +
      `(percentages are of busy time)\n\n  top ${top} functions by self time\n`,
  );
  for (const [k, us] of [...fns]
    .filter(([k]) => !k.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)) {
    process.stdout.write(`  ${line(us, k)}\n`);
  }
  if (values.callers) callers(prof, byId, selfUs, busy, line);
  process.stdout.write('\n  self time by area\n');
  for (const [k, us] of [...areas]
    .filter(([k]) => k !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, 15)) {
    process.stdout.write(`  ${line(us, k)}\n`);
  }
  process.stdout.write('\n');
}

/**
 * The self time of every function whose name contains --callers, grouped by the chain of its
 * nearest --depth callers outside node core (native and node: frames are skipped), so that a
 * native hot spot such as a socket write is charged to the code that asked for it.
 */
function callers(prof, byId, selfUs, busy, line) {
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const chains = new Map();
  let total = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n || !(n.callFrame.functionName || '').includes(values.callers)) continue;
    total += us;
    const frames = [];
    for (let p = parent.get(id); p !== undefined && frames.length < depth; p = parent.get(p)) {
      const cf = byId.get(p)?.callFrame;
      if (!cf?.url || cf.url.startsWith('node:')) continue;
      frames.push(`${cf.functionName || '(anonymous)'} ${shortUrl(cf.url)}:${cf.lineNumber + 1}`);
    }
    const key = frames.join('  <  ') || '(no JavaScript caller)';
    chains.set(key, (chains.get(key) ?? 0) + us);
  }
  process.stdout.write(
    `\n  callers of '${values.callers}' (${((total / busy) * 100).toFixed(1)}% of busy time)\n`,
  );
  for (const [k, us] of [...chains].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`  ${line(us, k)}\n`);
  }
}
