// Anthropic message -> OpenAI chat.completion (https://docs.anthropic.com/en/api/messages).
// Decisions:
// - id: 'chatcmpl-' + the Anthropic message id, so the answer looks like OpenAI's and can still be
//   traced upstream; created is now; model is the model the upstream says answered.
// - content: the text blocks joined (null when there are none); tool_use blocks become
//   tool_calls with JSON.stringify(input) as arguments. The forced structured-output tool (see
//   translate-request.ts) is the exception: its input is the answer, emitted as content text.
// - thinking blocks become `reasoning_content` (the field DeepSeek, vLLM and others use);
//   signatures and redacted thinking are dropped, they mean nothing to an OpenAI client.
// - finish_reason: end_turn/stop_sequence -> stop, max_tokens and model_context_window_exceeded
//   -> length, tool_use -> tool_calls (stop for the structured-output tool), refusal ->
//   content_filter, pause_turn -> length (the turn is unfinished and must be continued, as
//   after a length cut), anything else -> stop.
// - usage: Anthropic's input_tokens exclude cache reads and writes, OpenAI's prompt_tokens
//   include them; cache writes (billed at 1.25x / 2x) are kept as cache_write_tokens.
import { errors } from '../../errors.js';
import type { Usage } from '../../pipeline/types.js';
import { isObject, type Json } from './translate-request.js';

export interface AnthropicUsage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  cache_creation?: { ephemeral_5m_input_tokens?: number; ephemeral_1h_input_tokens?: number } | null;
  [k: string]: unknown;
}

export interface TranslateResponseOptions {
  providerName: string;
  /** The forced tool that carries a response_format answer, if any. */
  structuredTool: string | undefined;
  /** Unix seconds; injectable for tests. */
  now?: () => number;
}

export function translateResponse(message: unknown, options: TranslateResponseOptions): Json {
  if (!isObject(message) || message.type !== 'message' || !Array.isArray(message.content))
    throw errors.upstreamBadResponse(options.providerName, 'the body is not an Anthropic message');
  let text: string | undefined;
  let reasoning: string | undefined;
  const toolCalls: Json[] = [];
  let structuredAnswer = false;
  for (const block of message.content as unknown[]) {
    if (!isObject(block)) continue;
    if (block.type === 'text' && typeof block.text === 'string') text = (text ?? '') + block.text;
    else if (block.type === 'thinking' && typeof block.thinking === 'string')
      reasoning = (reasoning ?? '') + block.thinking;
    else if (block.type === 'tool_use' && block.name === options.structuredTool) {
      text = (text ?? '') + JSON.stringify(block.input ?? {});
      structuredAnswer = true;
    } else if (block.type === 'tool_use') {
      toolCalls.push({
        id: block.id,
        type: 'function',
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) },
      });
    }
  }
  const out: Json = { role: 'assistant', content: text ?? null };
  if (reasoning !== undefined) out.reasoning_content = reasoning;
  if (toolCalls.length > 0) out.tool_calls = toolCalls;
  out.refusal = null;
  const usage = isObject(message.usage) ? toOpenAIUsage(message.usage) : undefined;
  return {
    id: completionId(message.id),
    object: 'chat.completion',
    created: (options.now ?? nowSeconds)(),
    model: message.model,
    choices: [
      {
        index: 0,
        message: out,
        logprobs: null,
        finish_reason: mapStopReason(message.stop_reason, structuredAnswer),
      },
    ],
    ...(usage ? { usage } : {}),
  };
}

/** `structuredAnswer`: the tool_use that stopped the turn was the response_format tool. */
export function mapStopReason(reason: unknown, structuredAnswer: boolean): string {
  switch (reason) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
    case 'pause_turn':
      return 'length';
    case 'tool_use':
      return structuredAnswer ? 'stop' : 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default:
      return 'stop';
  }
}

/** Anthropic usage -> OpenAI usage: prompt_tokens counts cached and cache-written tokens too. */
export function toOpenAIUsage(u: AnthropicUsage): Usage {
  const input = count(u.input_tokens);
  const written = count(u.cache_creation_input_tokens);
  const read = count(u.cache_read_input_tokens);
  const completion = count(u.output_tokens);
  const prompt = input + written + read;
  const details: NonNullable<Usage['prompt_tokens_details']> = {
    cached_tokens: read,
    cache_write_tokens: written,
  };
  if (isObject(u.cache_creation)) {
    details.cache_write_5m_tokens = count(u.cache_creation.ephemeral_5m_input_tokens);
    details.cache_write_1h_tokens = count(u.cache_creation.ephemeral_1h_input_tokens);
  }
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: details,
  };
}

export function completionId(messageId: unknown): string {
  return `chatcmpl-${typeof messageId === 'string' ? messageId : 'anthropic'}`;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0;
}
