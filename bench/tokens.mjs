#!/usr/bin/env node
// Token-counting bench. Part 1 chooses the tokenizer library: js-tiktoken vs gpt-tokenizer, load time
// and count time at 2 KB / 20 KB / 1 MB of varied English, and identical counts on both encodings.
// Part 2 measures TokenCounter (src/accounting/tokens.ts): inline vs worker cost by size (the worker
// threshold), one inline count of a typical 2 KB chat, and the event loop's 1 ms timer lateness
// (p99) while 1 MB prompts are counted 4 at a time. js-tiktoken is a dependency only for this
// comparison: tollgate counts with gpt-tokenizer, which won here.
//
//   node bench/tokens.mjs           # TokenCounter from src/ (through tsx)
//   node bench/tokens.mjs --dist    # from dist/ (build first: npx tsc -p tsconfig.build.json)
//   node bench/tokens.mjs --quick   # fewer repetitions, shorter windows: indicative only
//   node bench/tokens.mjs --only libraries|counter
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENCODINGS = ['o200k_base', 'cl100k_base'];
const KB = 1024;

// ---- child mode: one library's load time, in a fresh process ----

if (process.argv[2] === '--child-load') {
  const [, , , lib, encoding] = process.argv;
  const heapBefore = process.memoryUsage().heapUsed;
  const start = performance.now();
  let count;
  if (lib === 'gpt-tokenizer') {
    const mod = await import(`gpt-tokenizer/encoding/${encoding}`);
    count = (text) => mod.countTokens(text, { disallowedSpecial: new Set() });
  } else {
    const { Tiktoken } = await import('js-tiktoken/lite');
    const { default: ranks } = await import(`js-tiktoken/ranks/${encoding}`);
    const enc = new Tiktoken(ranks);
    count = (text) => enc.encode(text, [], []).length;
  }
  count('hello world');
  const ms = performance.now() - start;
  globalThis.gc?.();
  const heapMB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
  process.stdout.write(JSON.stringify({ ms, heapMB }));
  process.exit(0);
}

// ---- helpers ----

const args = process.argv.slice(2);
if (args.includes('--help')) {
  console.log('usage: node bench/tokens.mjs [--quick] [--dist] [--only libraries|counter]');
  process.exit(0);
}
const QUICK = args.includes('--quick');
const DIST = args.includes('--dist');

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fmt = (ms) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => '| ' + cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ') + ' |';
  console.log(line(headers));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const row of rows) console.log(line(row));
}

/**
 * Varied English: every Markdown file in node_modules (READMEs, changelogs, docs: prose, lists,
 * tables, links, inline code) without its fenced code blocks, in path order, so the corpus is the
 * same wherever package-lock.json is.
 */
function loadCorpus() {
  const files = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const full = path.join(dir, name);
      const st = statSync(full, { throwIfNoEntry: false });
      if (st?.isDirectory()) walk(full);
      else if (st?.isFile() && name.endsWith('.md')) files.push(full);
    }
  };
  walk(path.join(ROOT, 'node_modules'));
  const fenced = /^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm;
  return files.map((f) => readFileSync(f, 'utf8').replace(fenced, '')).join('\n\n');
}

const corpus = loadCorpus();

/** Sample `i` of `size` characters: distinct windows of the corpus, so no run re-counts the same text. */
function sample(size, i) {
  const span = corpus.length - size;
  if (span <= 0) throw new Error(`corpus (${corpus.length} chars) is smaller than ${size}`);
  const offset = (i * 1_000_003) % span;
  return corpus.slice(offset, offset + size);
}

// ---- part 1: the library ----

function measureLoad(lib, encoding, runs) {
  const results = [];
  for (let i = 0; i < runs; i++) {
    const out = execFileSync(
      process.execPath,
      ['--expose-gc', fileURLToPath(import.meta.url), '--child-load', lib, encoding],
      { cwd: ROOT, encoding: 'utf8' },
    );
    results.push(JSON.parse(out));
  }
  return { ms: median(results.map((r) => r.ms)), heapMB: median(results.map((r) => r.heapMB)) };
}

async function loadCounters() {
  const { Tiktoken } = await import('js-tiktoken/lite');
  const counters = {};
  for (const encoding of ENCODINGS) {
    const gpt = await import(`gpt-tokenizer/encoding/${encoding}`);
    const { default: ranks } = await import(`js-tiktoken/ranks/${encoding}`);
    const tiktoken = new Tiktoken(ranks);
    counters[encoding] = {
      'js-tiktoken': (text) => tiktoken.encode(text, [], []).length,
      'gpt-tokenizer': (text) => gpt.countTokens(text, { disallowedSpecial: new Set() }),
      clearCache: () => gpt.clearMergeCache(),
    };
  }
  return counters;
}

const SIZES = [
  { label: '2 KB', chars: 2 * KB, runs: QUICK ? 20 : 60 },
  { label: '20 KB', chars: 20 * KB, runs: QUICK ? 5 : 20 },
  { label: '1 MB', chars: 1024 * KB, runs: QUICK ? 1 : 3 },
];

const TRICKY = [
  'hello world',
  'The <|endoftext|> marker and <|fim_prefix|> are plain text here.',
  'Ünïcödé, emoji 🦊🚀👩‍👩‍👧, 中文文本, русский текст, العربية',
  '    indented\n\n\n\ttabs   and   runs of     spaces     ',
  '3.14159265358979 1234567890 0x1F 1e-9 2024-06-01T12:00:00Z',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
];

async function partLibraries() {
  console.log(`# Part 1: js-tiktoken vs gpt-tokenizer`);
  console.log(`corpus: ${(corpus.length / 2 ** 20).toFixed(1)} M chars of Markdown from node_modules\n`);

  const loadRuns = QUICK ? 1 : 3;
  const loadRows = [];
  for (const encoding of ENCODINGS) {
    for (const lib of ['js-tiktoken', 'gpt-tokenizer']) {
      const { ms, heapMB } = measureLoad(lib, encoding, loadRuns);
      loadRows.push([lib, encoding, fmt(ms), heapMB.toFixed(0)]);
    }
  }
  console.log(`Load (fresh process, import + build + first count; median of ${loadRuns}):`);
  table(['library', 'encoding', 'load ms', 'heap MB'], loadRows);

  const counters = await loadCounters();
  let mismatches = 0;
  const rows = [];
  for (const encoding of ENCODINGS) {
    const c = counters[encoding];
    for (const text of TRICKY) {
      if (c['js-tiktoken'](text) !== c['gpt-tokenizer'](text)) {
        mismatches++;
        console.log(`MISMATCH ${encoding} on ${JSON.stringify(text)}`);
      }
    }
    for (const size of SIZES) {
      const times = { 'js-tiktoken': [], 'gpt-tokenizer': [], cold: [] };
      let tokens = 0;
      // One warm-up run, then `runs` distinct samples; every sample is counted by both libraries.
      for (let i = 0; i <= size.runs; i++) {
        const text = sample(size.chars, i + 1);
        const counts = {};
        for (const lib of ['js-tiktoken', 'gpt-tokenizer']) {
          const t0 = performance.now();
          counts[lib] = c[lib](text);
          if (i > 0) times[lib].push(performance.now() - t0);
        }
        c.clearCache();
        const t0 = performance.now();
        c['gpt-tokenizer'](text);
        if (i > 0) times.cold.push(performance.now() - t0);
        if (counts['js-tiktoken'] !== counts['gpt-tokenizer']) {
          mismatches++;
          console.log(`MISMATCH ${encoding} ${size.label} sample ${i + 1}: ${JSON.stringify(counts)}`);
        }
        tokens = counts['gpt-tokenizer'];
      }
      rows.push([
        encoding,
        size.label,
        String(tokens),
        fmt(median(times['js-tiktoken'])),
        fmt(median(times['gpt-tokenizer'])),
        fmt(median(times.cold)),
        (median(times['js-tiktoken']) / median(times['gpt-tokenizer'])).toFixed(1) + 'x',
      ]);
    }
  }
  console.log(
    `\nCount (median ms over distinct samples; "cold" = gpt-tokenizer with its merge cache cleared):`,
  );
  table(['encoding', 'size', 'tokens', 'js-tiktoken', 'gpt-tokenizer', 'gpt-tok. cold', 'speed-up'], rows);
  console.log(
    mismatches === 0
      ? `\nCounts identical on every sample and on ${TRICKY.length} tricky strings, both encodings.`
      : `\n${mismatches} count mismatches!`,
  );
  return mismatches;
}

// ---- part 2: TokenCounter ----

async function importCounter() {
  if (DIST) return import(path.join(ROOT, 'dist/accounting/tokens.js'));
  const { register } = await import('tsx/esm/api');
  register();
  return import(path.join(ROOT, 'src/accounting/tokens.ts'));
}

/** A chat whose text is `chars` long: a system prompt and alternating user/assistant turns. */
function chatOf(chars, seed) {
  const messages = [
    { role: 'system', content: 'You are a careful assistant. Answer from the documents given.' },
  ];
  const turns = 5;
  for (let i = 0; i < turns; i++) {
    const role = i % 2 === 0 ? 'user' : 'assistant';
    messages.push({ role, content: sample(Math.floor(chars / turns), seed * 10 + i) });
  }
  return { messages };
}

/** Lateness (ms) of a 1 ms setTimeout chain over `ms` of wall time. */
async function timerLateness(ms) {
  const samples = [];
  let stop = false;
  const done = new Promise((resolve) => {
    let expected = performance.now() + 1;
    const tick = () => {
      const now = performance.now();
      samples.push(Math.max(0, now - expected));
      if (stop) return resolve();
      expected = now + 1;
      setTimeout(tick, 1);
    };
    setTimeout(tick, 1);
  });
  await sleep(ms);
  stop = true;
  await done;
  return samples;
}

async function underLoad(counter, chats, concurrency, ms) {
  let stop = false;
  let counted = 0;
  let failed = 0;
  const loops = Array.from({ length: concurrency }, async (_, i) => {
    while (!stop) {
      try {
        await counter.countChat('gpt-4o', chats[i % chats.length]);
        counted++;
      } catch {
        failed++;
      }
      // An inline count never yields: give the timer a turn, as request handling would.
      await new Promise((resolve) => setImmediate(resolve));
    }
  });
  const samples = await timerLateness(ms);
  stop = true;
  await Promise.all(loops);
  return { samples, counted, failed };
}

async function partCounter() {
  console.log(`\n# Part 2: TokenCounter (${DIST ? 'dist' : 'src via tsx'})\n`);
  const { TokenCounter, DEFAULT_WORKER_THRESHOLD_CHARS } = await importCounter();

  let t0 = performance.now();
  const counter = await TokenCounter.create();
  console.log(
    `TokenCounter.create() (both encodings here + 1 worker ready): ${fmt(performance.now() - t0)} ms`,
  );
  const offload = await TokenCounter.create({ workerThresholdChars: 0 });
  const inline = await TokenCounter.create({ workers: 0 });

  // Threshold: what an inline count blocks the loop for, vs a worker round trip, by size.
  const sizes = [2, 4, 8, 16, 32, 64, 128].map((k) => k * KB);
  const runs = QUICK ? 10 : 40;
  const rows = [];
  for (const size of sizes) {
    const inlineMs = [];
    const workerMs = [];
    const postMs = [];
    for (let i = 0; i <= runs; i++) {
      const text = sample(size, 500 + i);
      t0 = performance.now();
      inline.countTextSync('gpt-4o', text);
      const t1 = performance.now();
      const pending = offload.countText('gpt-4o', text);
      const t2 = performance.now();
      await pending;
      const t3 = performance.now();
      if (i === 0) continue;
      inlineMs.push(t1 - t0);
      postMs.push(t2 - t1);
      workerMs.push(t3 - t1);
    }
    rows.push([`${size / KB} KB`, fmt(median(inlineMs)), fmt(median(postMs)), fmt(median(workerMs))]);
  }
  console.log(`\nInline vs worker, o200k_base (median ms over ${runs} distinct samples):`);
  table(['text', 'inline (blocks loop)', 'worker: main-thread part', 'worker: round trip'], rows);
  console.log(`threshold in use: ${DEFAULT_WORKER_THRESHOLD_CHARS / KB} KB (DEFAULT_WORKER_THRESHOLD_CHARS)`);

  // One inline count of a typical 2 KB chat prompt.
  const chatRuns = QUICK ? 200 : 1000;
  const chatMs = [];
  for (let i = 0; i <= chatRuns; i++) {
    const chat = chatOf(2 * KB, 2000 + i);
    t0 = performance.now();
    counter.countChatSync('gpt-4o', chat);
    if (i > 0) chatMs.push(performance.now() - t0);
  }
  const chat = chatOf(2 * KB, 2000);
  console.log(
    `\nOne inline countChatSync of a 2 KB chat (6 messages, ${counter.countChatSync('gpt-4o', chat)} tokens): ` +
      `median ${(median(chatMs) * 1000).toFixed(0)} µs, p99 ${(percentile(chatMs, 99) * 1000).toFixed(0)} µs`,
  );

  // Event-loop responsiveness: a 1 ms timer's lateness, idle and while 1 MB prompts are counted.
  // Idle and loaded windows alternate, so a change in background load hits both alike.
  const rounds = QUICK ? 1 : 4;
  const windowMs = 1500;
  const bigChats = [1, 2, 3, 4].map((seed) => chatOf(1024 * KB, 3000 + seed));
  const notNice = await TokenCounter.create({ workerNice: 0 });
  const idle = [];
  const loaded = { samples: [], counted: 0, failed: 0 };
  const loadedNotNice = { samples: [], counted: 0, failed: 0 };
  const add = (into, r) => {
    into.samples.push(...r.samples);
    into.counted += r.counted;
    into.failed += r.failed;
  };
  for (let round = 0; round < rounds; round++) {
    idle.push(...(await timerLateness(windowMs)));
    add(loaded, await underLoad(counter, bigChats, 4, windowMs));
    add(loadedNotNice, await underLoad(notNice, bigChats, 4, windowMs));
  }
  const blocking = await underLoad(inline, bigChats, 4, windowMs);
  const p99Idle = percentile(idle, 99);
  const p99Loaded = percentile(loaded.samples, 99);
  console.log(
    `\n1 ms timer lateness; 4 concurrent countChat of 1 MB prompts, repeatedly; ${rounds} x ${windowMs / 1000} s ` +
      `windows per scenario (inline only: 1):`,
  );
  const counted = (r) => `${r.counted}${r.failed ? ` (${r.failed} failed)` : ''}`;
  const row = (name, samples, note) => [
    name,
    samples.length,
    fmt(percentile(samples, 50)),
    fmt(percentile(samples, 99)),
    fmt(Math.max(...samples)),
    note,
  ];
  table(
    ['scenario', 'ticks', 'p50 ms', 'p99 ms', 'max ms', '1 MB prompts counted'],
    [
      row('idle', idle, '-'),
      row(`counter (1 worker, nice ${counter.workerNice})`, loaded.samples, counted(loaded)),
      row('counter (1 worker, nice 0)', loadedNotNice.samples, counted(loadedNotNice)),
      row('inline only (workers: 0)', blocking.samples, String(blocking.counted)),
    ],
  );
  const rise = p99Loaded - p99Idle;
  const pass = rise <= 2 && loaded.failed === 0;
  console.log(
    `p99 rise with the worker (default nice ${counter.workerNice}): ${fmt(rise)} ms (target <= 2 ms): ` +
      (pass ? 'PASS' : 'FAIL'),
  );

  await Promise.all([counter.close(), notNice.close(), offload.close(), inline.close()]);
  return pass;
}

const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const mismatches = only === 'counter' ? 0 : await partLibraries();
const pass = only === 'libraries' ? true : await partCounter();
process.exitCode = mismatches === 0 && pass ? 0 : 1;
