// Preloaded (--import) into a gateway child process started with --expose-gc and an IPC channel
// (spawnCli's `ipc`): on the message 'heap' it collects garbage fully and answers with
// process.memoryUsage(), so a test reads what the gateway really retains, not how much garbage
// happens to wait for the next collection.
import { setImmediate } from 'node:timers/promises';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('heap-probe needs node --expose-gc');

process.on('message', (message) => {
  if (message !== 'heap') return;
  void (async () => {
    // Some objects are freed only once a turn has passed (finalizers, closed sockets' handles).
    for (let i = 0; i < 3; i++) {
      gc();
      await setImmediate();
    }
    process.send?.({ heap: process.memoryUsage() });
  })();
});
// The channel must not keep the gateway alive: it exits on SIGTERM as it always does.
process.channel?.unref();
