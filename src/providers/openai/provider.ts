// The OpenAI provider, also every OpenAI-compatible service: the fast path. The request body is
// forwarded as received, rewriting only `model` (the deployment's upstream name) and, for
// streams, forcing `stream_options.include_usage` so usage is known for every stream. The
// response body is forwarded byte for byte; it is parsed only to read usage.
import { DEFAULT_AZURE_API_VERSION } from '../../config/defaults.js';
import type { ProviderConfig } from '../../config/schema.js';
import { errors } from '../../errors.js';
import type { Deployment, Outcome, PipelineContext } from '../../pipeline/types.js';
import type { Provider } from '../types.js';
import { expectEventStream, readBody, rejectUnlessOk, UpstreamClient } from '../upstream-client.js';
import { mapUpstreamError } from './map-error.js';
import { isUsage, relayStream } from './usage-tap.js';
import { insertStreamUsage, spliceModel } from './body-rewrite.js';

const ENDPOINT_PATHS = { chat: '/chat/completions', embeddings: '/embeddings' } as const;

/**
 * Azure OpenAI speaks the same wire format under another address and header: the deployment is
 * in the path (`/openai/deployments/{name}/chat/completions?api-version=...`) and the key goes
 * in `api-key` (https://learn.microsoft.com/azure/ai-services/openai/reference).
 */
function azurePath(apiVersion: string) {
  return (endpoint: 'chat' | 'embeddings', target: Deployment): string =>
    `/openai/deployments/${encodeURIComponent(target.model)}${ENDPOINT_PATHS[endpoint]}?api-version=${encodeURIComponent(apiVersion)}`;
}

export function createOpenAIProvider(config: ProviderConfig): Provider {
  const client = new UpstreamClient(config);
  const azure = config.type === 'azure';
  const pathFor = azure
    ? azurePath(config.apiVersion ?? DEFAULT_AZURE_API_VERSION)
    : (endpoint: 'chat' | 'embeddings'): string => ENDPOINT_PATHS[endpoint];
  const auth: Record<string, string> = config.apiKey
    ? azure
      ? { 'api-key': config.apiKey }
      : { authorization: `Bearer ${config.apiKey}` }
    : {};
  const baseHeaders: Record<string, string> = {
    ...config.headers,
    'content-type': 'application/json',
    ...auth,
  };

  return {
    name: config.name,
    close: () => client.close(),

    async call(ctx: PipelineContext, target: Deployment): Promise<Outcome> {
      const res = await client.request({
        path: pathFor(ctx.endpoint, target),
        headers: baseHeaders,
        body: upstreamBody(ctx, target),
        signal: ctx.signal,
        ...client.timeoutsFor(target, ctx.deadlineAt),
      });

      await rejectUnlessOk(res, (status, headers, text) =>
        mapUpstreamError(config.name, config.apiKey, status, headers, text),
      );

      if (ctx.stream) {
        await expectEventStream(res, config.name);
        const { chunks, usage } = relayStream(
          res,
          config.name,
          ctx.clientWantsUsage,
          config.maxResponseBytes,
        );
        return { kind: 'stream', status: 200, headers: {}, chunks, usage };
      }

      const raw = await readBody(res, config.maxResponseBytes, config.name);
      let parsed: { usage?: unknown };
      try {
        parsed = JSON.parse(raw.toString('utf8')) as { usage?: unknown };
      } catch {
        throw errors.upstreamBadResponse(config.name, 'the response body is not valid JSON');
      }
      const usage = isUsage(parsed?.usage) ? parsed.usage : undefined;
      return { kind: 'json', status: res.statusCode, headers: {}, body: raw, parsed, usage };
    },
  };
}

/**
 * The received bytes when nothing needs rewriting; the received bytes with `model` spliced and
 * the stream's usage option inserted where those are provably safe; otherwise one serialisation
 * with the changes.
 */
function upstreamBody(ctx: PipelineContext, target: Deployment): Buffer | string {
  const body = ctx.body;
  const needsUsage =
    ctx.stream &&
    (body.stream_options as { include_usage?: unknown } | null | undefined)?.include_usage !== true;
  // The received bytes, `model` spliced when it changes, the usage option added when missing.
  const bytes =
    target.model === ctx.model ? ctx.rawBody : spliceModel(ctx.rawBody, body, ctx.model, target.model);
  if (bytes && !needsUsage) return bytes;
  const withUsage = bytes && insertStreamUsage(bytes, body);
  if (withUsage) return withUsage;
  const out: Record<string, unknown> = { ...body, model: target.model };
  if (needsUsage) {
    const so = body.stream_options;
    out.stream_options = { ...(so !== null && typeof so === 'object' ? so : {}), include_usage: true };
  }
  return JSON.stringify(out);
}
