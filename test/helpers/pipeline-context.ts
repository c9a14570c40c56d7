// A PipelineContext for unit tests of one stage: team 'search', key 'k1', a small chat body (its
// bytes derived from it), a fresh Canceller and a log sink. Any field can be overridden.
import { Canceller } from '../../src/pipeline/abort.js';
import type { PipelineContext } from '../../src/pipeline/types.js';
import { createLogSink } from './log-sink.js';

let n = 0;

export function makePipelineContext(over: Partial<PipelineContext> = {}): PipelineContext {
  const model = over.model ?? 'm';
  const body = over.body ?? { model, messages: [{ role: 'user', content: 'hi' }] };
  return {
    reqId: `r${++n}`,
    endpoint: 'chat',
    team: { name: 'search', models: new Set(), allModels: true },
    keyId: 'k1',
    model,
    body,
    rawBody: Buffer.from(JSON.stringify(body)),
    stream: false,
    clientWantsUsage: false,
    headers: {},
    logFields: {},
    signal: new Canceller(),
    log: createLogSink().log,
    candidates: [],
    deployment: undefined,
    attempts: 0,
    deadlineAt: undefined,
    ...over,
  };
}
