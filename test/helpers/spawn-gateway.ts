// Runs the real `tollgate` CLI as a child process (through tsx, no build needed), for tests of
// the process itself: start-up checks, config errors, signals and exit codes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const CLI = path.resolve(import.meta.dirname, '../../src/cli.ts');
const TSX = import.meta.resolve('tsx');

export interface SpawnedCli {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the listening address from the 'tollgate listening' log line. */
  listening(timeoutMs?: number): Promise<string>;
}

export interface SpawnOptions {
  /** Node flags and preloads (after tsx's, so a preload may be TypeScript): `--expose-gc`, `--import FILE`. */
  nodeArgs?: string[];
  /** Opens an IPC channel to the child (child.send / 'message'), for a preloaded probe. */
  ipc?: boolean;
}

export function spawnCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  options: SpawnOptions = {},
): SpawnedCli {
  const child = spawn(process.execPath, ['--import', TSX, ...(options.nodeArgs ?? []), CLI, ...args], {
    // An empty working directory: no config/tollgate.yaml or .env of the developer's leaks in.
    cwd: mkdtempSync(path.join(tmpdir(), 'tollgate-cwd-')),
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TOLLGATE_LOG_LEVEL: 'info', ...env },
    stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  // Both are pipes whichever stdio was chosen.
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exit,
    async listening(timeoutMs = 15000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        for (const line of out.split('\n')) {
          if (!line.includes('tollgate listening')) continue;
          return (JSON.parse(line) as { address: string }).address;
        }
        if (child.exitCode !== null) throw new Error(`exited early: ${err}${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`not listening after ${timeoutMs} ms: ${err}${out}`);
    },
  };
}
