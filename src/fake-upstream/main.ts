// Standalone fake upstream (OpenAI, plus Anthropic's /v1/messages) for the demo and the benchmark:
//   node dist/fake-upstream/main.js --port 9999 --host 127.0.0.1 --latency-ms 0 --chunks 5 --chunk-delay-ms 0
// Prints one "listening" line, serves until SIGTERM/SIGINT, then closes and exits 0. Also used by
// `tollgate fake-upstream` through runFakeUpstreamCli().
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startFakeUpstream } from './server.js';
import type { FakeUpstream } from './types.js';

const USAGE =
  'usage: fake-upstream [--port N] [--host H] [--latency-ms N] [--chunks N] [--chunk-delay-ms N] ' +
  '[--embedding-dimensions N] [--api-key KEY] [--record]';

function int(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    process.stderr.write(`--${name} must be a non-negative integer, got '${value}'\n${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

/** Starts the server from command-line arguments; resolves once it listens (exit is left to signals). */
export async function runFakeUpstreamCli(args: string[]): Promise<FakeUpstream | undefined> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        port: { type: 'string', default: '9999' },
        host: { type: 'string', default: '127.0.0.1' },
        'latency-ms': { type: 'string' },
        chunks: { type: 'string' },
        'chunk-delay-ms': { type: 'string' },
        'embedding-dimensions': { type: 'string' },
        'api-key': { type: 'string' },
        // Off by default: a benchmark run would otherwise keep every request body in memory.
        record: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return undefined;
  }

  const upstream = await startFakeUpstream({
    port: int('port', values.port, 9999),
    host: values.host,
    latencyMs: int('latency-ms', values['latency-ms'], 0),
    chunks: int('chunks', values.chunks, 5),
    chunkDelayMs: int('chunk-delay-ms', values['chunk-delay-ms'], 0),
    embeddingDimensions: int('embedding-dimensions', values['embedding-dimensions'], 8),
    apiKey: values['api-key'],
    recordRequests: values.record,
  });
  process.stdout.write(`fake upstream listening on ${upstream.url}\n`);

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    upstream.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return upstream;
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

// Only run when executed directly, not when imported by the tollgate CLI.
if (isEntryPoint()) {
  runFakeUpstreamCli(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(
      `fake upstream failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exit(1);
  });
}
