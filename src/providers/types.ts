// What a provider is to the pipeline: it takes the context and one deployment and returns an
// Outcome, or throws an UpstreamError (or ClientAbortedError) that the caller classifies.
import type { Deployment, Outcome, PipelineContext } from '../pipeline/types.js';

export interface Provider {
  readonly name: string;
  call(ctx: PipelineContext, target: Deployment): Promise<Outcome>;
  close(): Promise<void>;
}
