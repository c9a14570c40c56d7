// Work deferred to the end of the current turn of the event loop (its check phase, one
// setImmediate for all of it): tasks first, in the order queued (a task may queue another, or
// write to a socket), then the flushes (the Redis client's corked sockets, connect.ts), so that
// whatever the tasks sent leaves in the same socket write as the turn's other commands.
// RedisStore's joined calls and the after-response work a request's settle call did not take
// (pipeline/settle-also.ts) run here.

const tasks: (() => void)[] = [];
const flushes: (() => void)[] = [];
let scheduled = false;

/**
 * Runs `task` at the end of the current turn. `task` must not throw: one that does (a bug) does
 * not cost the others their turn, and is reported as a process warning (stderr) rather than
 * taking the gateway down.
 */
export function atEndOfTurn(task: () => void): void {
  tasks.push(task);
  schedule();
}

/** Runs `flush` at the end of the current turn, after every task. */
export function flushAtEndOfTurn(flush: () => void): void {
  flushes.push(flush);
  schedule();
}

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(endOfTurn);
}

function endOfTurn(): void {
  scheduled = false;
  for (let i = 0; i < tasks.length; i++) {
    try {
      tasks[i]!();
    } catch (err) {
      process.emitWarning(err instanceof Error ? err : new Error(String(err)), 'TollgateEndOfTurnWarning');
    }
  }
  tasks.length = 0;
  for (let i = 0; i < flushes.length; i++) flushes[i]!();
  flushes.length = 0;
}
