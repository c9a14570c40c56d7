// OpenAI chat request -> Anthropic Messages request (https://docs.anthropic.com/en/api/messages).
// Every top-level field is either translated, dropped because it cannot change the answer, or
// refused with a 400 `unsupported_parameter` naming it (STYLE §3: never drop or clamp silently).
// Decisions:
// - temperature: OpenAI allows 0–2, Anthropic 0–1. Values up to 1 pass unchanged; above 1 is
//   refused. Scaling (t/2) would quietly change the sampling of every request.
// - max_tokens is required upstream: max_completion_tokens, else max_tokens, else the option
//   `defaultMaxTokens` (4096). A cut answer still says so (finish_reason 'length').
// - system and developer messages, wherever they stand, join the top-level `system` in order
//   (a string joined with blank lines, or text blocks when any carries cache_control).
// - Consecutive same-role messages merge into one turn (Anthropic needs alternation); tool
//   messages become tool_result blocks of a user turn, placed before any text of that turn.
// - cache_control on a content part, a message (-> its last block) or a tool passes through.
// - response_format json_object / json_schema: a forced tool (`tool_choice: {type:'tool'}`)
//   whose input_schema is the schema; the response and stream translators turn that tool's
//   input back into message content (finish_reason 'stop'). Refused together with `tools`.
// - Dropped (cannot change the answer): seed, service_tier, store, metadata, stream_options
//   (usage is always read upstream), prompt_cache_key, prompt_cache_retention; n: 1,
//   logprobs: false, zero penalties, an empty logit_bias and modalities ['text'] are defaults.
// - Refused: any other field (unknown ones too: we cannot know they are harmless), message
//   `name`, image detail 'low', audio parts, legacy functions. `strict` on a function or schema
//   is accepted: Claude follows the schema but Anthropic does not enforce it.
import { errors } from '../../errors.js';

export type Json = Record<string, unknown>;

export interface TranslateRequestOptions {
  /** The upstream model name. */
  model: string;
  stream: boolean;
  /** max_tokens when the client sets none (Anthropic requires one). */
  defaultMaxTokens: number;
}

export interface TranslatedRequest {
  body: Json;
  /** Set when response_format became a forced tool: the tool whose input is the answer. */
  structuredTool: string | undefined;
}

export const DEFAULT_MAX_TOKENS = 4096;
const JSON_TOOL = 'json_output';
/** Top-level fields translated below. */
const HANDLED = new Set(
  (
    'model messages stream max_tokens max_completion_tokens temperature top_p top_k stop tools ' +
    'tool_choice parallel_tool_calls response_format user safety_identifier'
  ).split(' '),
);
/** Top-level fields dropped because they cannot change the answer. */
const DROPPED = new Set(
  'seed service_tier store metadata stream_options prompt_cache_key prompt_cache_retention'.split(' '),
);
/** Fields that are harmless at their default value and output-changing otherwise. */
const NEUTRAL: Record<string, (v: unknown) => boolean> = {
  n: (v) => v === 1,
  logprobs: (v) => v === false,
  frequency_penalty: (v) => v === 0,
  presence_penalty: (v) => v === 0,
  logit_bias: (v) => isObject(v) && Object.keys(v).length === 0,
  modalities: (v) => Array.isArray(v) && v.every((m) => m === 'text'),
};
const MESSAGE_KEYS: Record<string, string[]> = {
  system: ['role', 'content', 'cache_control'],
  developer: ['role', 'content', 'cache_control'],
  user: ['role', 'content', 'cache_control'],
  assistant: ['role', 'content', 'cache_control', 'tool_calls', 'refusal'],
  tool: ['role', 'content', 'cache_control', 'tool_call_id'],
};
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);
const NO_EQUIVALENT = 'is not supported for this model: the Anthropic Messages API has no equivalent.';

export function translateRequest(body: Readonly<Json>, options: TranslateRequestOptions): TranslatedRequest {
  for (const [key, value] of Object.entries(body)) {
    if (value === null || value === undefined || HANDLED.has(key) || DROPPED.has(key)) continue;
    if (Object.hasOwn(NEUTRAL, key) && NEUTRAL[key]?.(value)) continue;
    throw errors.unsupportedParameter(key, NO_EQUIVALENT);
  }
  if (!Array.isArray(body.messages)) throw errors.invalidRequest('`messages` must be an array.', 'messages');
  const { system, messages } = translateMessages(body.messages);
  const out: Json = {
    model: options.model,
    max_tokens: body.max_completion_tokens ?? body.max_tokens ?? options.defaultMaxTokens,
  };
  if (system.length > 0) {
    out.system = system.some((b) => b.cache_control != null)
      ? system
      : system.map((b) => b.text as string).join('\n\n');
  }
  out.messages = messages;

  const tools = translateTools(body.tools);
  let structuredTool: string | undefined;
  if (tools.length > 0) {
    out.tools = tools;
    const choice = translateToolChoice(body.tool_choice, body.parallel_tool_calls === false);
    if (choice) out.tool_choice = choice;
  } else if (isObject(body.tool_choice)) {
    throw errors.invalidRequest('`tool_choice` names a function but no `tools` were given.', 'tool_choice');
  }
  const format = translateResponseFormat(body.response_format, tools.length > 0);
  if (format) {
    structuredTool = format.name as string;
    out.tools = [format];
    out.tool_choice = { type: 'tool', name: structuredTool, disable_parallel_tool_use: true };
  }

  if (typeof body.stop === 'string') out.stop_sequences = [body.stop];
  else if (Array.isArray(body.stop) && body.stop.length > 0) {
    if (!body.stop.every((s) => typeof s === 'string'))
      throw errors.invalidRequest('`stop` must be a string or an array of strings.', 'stop');
    out.stop_sequences = body.stop;
  } else if (body.stop != null && !Array.isArray(body.stop))
    throw errors.invalidRequest('`stop` must be a string or an array of strings.', 'stop');

  if (typeof body.temperature === 'number') {
    if (body.temperature > 1)
      throw errors.unsupportedParameter(
        'temperature',
        'must be between 0 and 1 for this model (the Anthropic range); OpenAI-style values above 1 are not rescaled.',
      );
    out.temperature = body.temperature;
  }
  if (body.top_p != null) out.top_p = body.top_p;
  if (body.top_k != null) out.top_k = body.top_k;
  const user = body.user ?? body.safety_identifier;
  if (typeof user === 'string' && user.length > 0) out.metadata = { user_id: user };
  if (options.stream) out.stream = true;
  return { body: out, structuredTool };
}

interface Message {
  role: 'user' | 'assistant';
  content: Json[];
}

function translateMessages(input: unknown[]): { system: Json[]; messages: Message[] } {
  const system: Json[] = [];
  const messages: Message[] = [];
  input.forEach((m, i) => {
    const path = `messages[${i}]`;
    if (!isObject(m)) throw errors.invalidRequest(`\`${path}\` must be an object.`, path);
    const role = m.role as string;
    const allowed = Object.hasOwn(MESSAGE_KEYS, role) ? MESSAGE_KEYS[role] : undefined;
    if (!allowed)
      throw errors.unsupportedParameter(`${path}.role`, `'${String(role).slice(0, 40)}' ${NO_EQUIVALENT}`);
    for (const [key, value] of Object.entries(m)) {
      if (value != null && !allowed.includes(key))
        throw errors.unsupportedParameter(`${path}.${key}`, NO_EQUIVALENT);
    }
    let blocks: Json[];
    if (role === 'tool') {
      if (typeof m.tool_call_id !== 'string')
        throw errors.invalidRequest(`\`${path}.tool_call_id\` must be a string.`, `${path}.tool_call_id`);
      const content = typeof m.content === 'string' ? m.content : contentBlocks(m.content, path, role);
      blocks = [{ type: 'tool_result', tool_use_id: m.tool_call_id, content }];
    } else {
      blocks = contentBlocks(m.content, path, role);
      if (role === 'assistant') {
        if (typeof m.refusal === 'string' && m.refusal.length > 0)
          blocks.push({ type: 'text', text: m.refusal });
        if (m.tool_calls != null) blocks.push(...toolUseBlocks(m.tool_calls, `${path}.tool_calls`));
      }
    }
    const last = blocks[blocks.length - 1];
    if (m.cache_control != null && last) last.cache_control = m.cache_control;
    if (role === 'system' || role === 'developer') return void system.push(...blocks);
    if (blocks.length === 0) return;
    const turn: Message['role'] = role === 'assistant' ? 'assistant' : 'user';
    const prev = messages[messages.length - 1];
    if (prev && prev.role === turn) prev.content.push(...blocks);
    else messages.push({ role: turn, content: blocks });
  });
  // Anthropic wants a user turn's tool_result blocks before its other content.
  for (const msg of messages) {
    if (msg.role === 'user') {
      const results = msg.content.filter((b) => b.type === 'tool_result');
      msg.content = [...results, ...msg.content.filter((b) => b.type !== 'tool_result')];
    }
  }
  return { system, messages };
}

/** Content parts -> blocks: images and files only from users, refusals only from the assistant. */
function contentBlocks(content: unknown, path: string, role: string): Json[] {
  if (content == null) return [];
  if (typeof content === 'string') return content.length > 0 ? [{ type: 'text', text: content }] : [];
  if (!Array.isArray(content))
    throw errors.invalidRequest(`\`${path}.content\` must be a string or an array.`, `${path}.content`);
  const out: Json[] = [];
  content.forEach((part, j) => {
    const p = `${path}.content[${j}]`;
    if (!isObject(part)) throw errors.invalidRequest(`\`${p}\` must be an object.`, p);
    let block: Json | undefined;
    if (part.type === 'text' && typeof part.text === 'string') {
      if (part.text.length > 0) block = { type: 'text', text: part.text };
    } else if (role === 'assistant' && part.type === 'refusal' && typeof part.refusal === 'string') {
      if (part.refusal.length > 0) block = { type: 'text', text: part.refusal };
    } else if (role === 'user' && part.type === 'image_url')
      block = imageBlock(part.image_url, `${p}.image_url`);
    else if (role === 'user' && part.type === 'file') block = fileBlock(part.file, `${p}.file`);
    else
      throw errors.unsupportedParameter(`${p}.type`, `'${String(part.type).slice(0, 40)}' ${NO_EQUIVALENT}`);
    if (block && part.cache_control != null) block.cache_control = part.cache_control;
    if (block) out.push(block);
  });
  return out;
}

function imageBlock(image: unknown, path: string): Json {
  const url = isObject(image) ? image.url : undefined;
  if (typeof url !== 'string')
    throw errors.invalidRequest(`\`${path}.url\` must be a string.`, `${path}.url`);
  if (isObject(image) && image.detail === 'low')
    throw errors.unsupportedParameter(
      `${path}.detail`,
      "'low' is not supported: Claude always reads the full image.",
    );
  if (/^https?:\/\//i.test(url)) return { type: 'image', source: { type: 'url', url } };
  const data = /^data:([\w.+/-]+);base64,(.*)$/s.exec(url);
  if (!data?.[1] || !IMAGE_TYPES.has(data[1].toLowerCase()))
    throw errors.unsupportedParameter(
      `${path}.url`,
      'must be an http(s) URL or a base64 data URL of a JPEG, PNG, GIF or WebP image.',
    );
  return { type: 'image', source: { type: 'base64', media_type: data[1].toLowerCase(), data: data[2] } };
}

function fileBlock(file: unknown, path: string): Json {
  const data = isObject(file) && typeof file.file_data === 'string' ? file.file_data : '';
  const pdf = /^data:application\/pdf;base64,(.*)$/s.exec(data);
  if (!pdf) throw errors.unsupportedParameter(path, 'is supported only as a base64 PDF in `file_data`.');
  return { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: pdf[1] } };
}

function toolUseBlocks(calls: unknown, path: string): Json[] {
  if (!Array.isArray(calls)) throw errors.invalidRequest(`\`${path}\` must be an array.`, path);
  return calls.map((call, j) => {
    const p = `${path}[${j}]`;
    if (!isObject(call) || !isObject(call.function) || typeof call.id !== 'string')
      throw errors.invalidRequest(`\`${p}\` must have an id and a function.`, p);
    if (call.type !== 'function') throw errors.unsupportedParameter(`${p}.type`, NO_EQUIVALENT);
    const args = call.function.arguments;
    let input: unknown;
    try {
      input = args === '' || args == null ? {} : typeof args === 'string' ? JSON.parse(args) : undefined;
    } catch {
      input = undefined;
    }
    if (!isObject(input))
      throw errors.invalidRequest(
        `\`${p}.function.arguments\` must be a JSON object.`,
        `${p}.function.arguments`,
      );
    return { type: 'tool_use', id: call.id, name: call.function.name, input };
  });
}

function translateTools(tools: unknown): Json[] {
  if (tools == null) return [];
  if (!Array.isArray(tools)) throw errors.invalidRequest('`tools` must be an array.', 'tools');
  return tools.map((tool, i) => {
    if (!isObject(tool) || tool.type !== 'function')
      throw errors.unsupportedParameter(
        `tools[${i}].type`,
        'only function tools are supported for this model.',
      );
    const fn = isObject(tool.function) ? tool.function : {};
    const out: Json = { name: fn.name };
    if (typeof fn.description === 'string') out.description = fn.description;
    out.input_schema = isObject(fn.parameters) ? fn.parameters : { type: 'object', properties: {} };
    if (tool.cache_control != null) out.cache_control = tool.cache_control;
    return out;
  });
}

function translateToolChoice(choice: unknown, noParallel: boolean): Json | undefined {
  let out: Json | undefined;
  if (choice == null) out = noParallel ? { type: 'auto' } : undefined;
  else if (choice === 'auto') out = { type: 'auto' };
  else if (choice === 'required') out = { type: 'any' };
  else if (choice === 'none') return { type: 'none' };
  else if (isObject(choice) && choice.type === 'function' && isObject(choice.function))
    out = { type: 'tool', name: choice.function.name };
  else throw errors.unsupportedParameter('tool_choice', NO_EQUIVALENT);
  if (out && noParallel) out.disable_parallel_tool_use = true;
  return out;
}

function translateResponseFormat(format: unknown, hasTools: boolean): Json | undefined {
  if (format == null || (isObject(format) && format.type === 'text')) return undefined;
  if (!isObject(format) || (format.type !== 'json_object' && format.type !== 'json_schema'))
    throw errors.unsupportedParameter('response_format.type', NO_EQUIVALENT);
  if (hasTools)
    throw errors.unsupportedParameter(
      'response_format',
      'cannot be combined with `tools` for this model: structured output is a forced tool call here.',
    );
  if (format.type === 'json_object')
    return { name: JSON_TOOL, description: 'Respond with a JSON object.', input_schema: { type: 'object' } };
  const spec = isObject(format.json_schema) ? format.json_schema : {};
  const schema = isObject(spec.schema) ? spec.schema : { type: 'object' };
  if (schema.type !== 'object')
    throw errors.unsupportedParameter(
      'response_format.json_schema.schema',
      "must have type 'object' at its root for this model.",
    );
  const name = typeof spec.name === 'string' && spec.name.length > 0 ? spec.name : JSON_TOOL;
  const description =
    typeof spec.description === 'string' ? spec.description : 'Respond with JSON matching this schema.';
  return { name, description, input_schema: schema };
}

export function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
