// Request validation for the fake `POST /v1/messages`, with Anthropic's messages: its schema is strict
// (unknown fields are "Extra inputs are not permitted"), so a translator that leaks an OpenAI-only
// field (`n`, `stream_options`, a message's `name` or `tool_calls`) fails here as it would for real.
// Messages are `<path>: <problem>`, the path dotted with indexes (`messages.1.content.0`).
import { promptSegments } from './prompt-cache.js';
import { isRecord } from './responses.js';
import type { Json } from './responses.js';

interface Invalid {
  type: 'invalid_request_error';
  message: string;
}

function invalid(message: string): Invalid {
  return { type: 'invalid_request_error', message };
}

const NOT_AN_OBJECT = 'Input should be a valid dictionary or object to extract fields from';

const TOP_LEVEL = new Set([
  'model',
  'messages',
  'max_tokens',
  'system',
  'metadata',
  'stop_sequences',
  'stream',
  'temperature',
  'top_k',
  'top_p',
  'tools',
  'tool_choice',
  'thinking',
  'service_tier',
  'container',
  'mcp_servers',
  'context_management',
  'output_config',
  'output_format',
]);

const TOOL_CHOICES = ['auto', 'any', 'tool', 'none'];
const MESSAGE_KEYS = new Set(['role', 'content']);
const METADATA_KEYS = new Set(['user_id']);

function extraKey(v: Json, allowed: ReadonlySet<string>, path: string): Invalid | undefined {
  for (const k of Object.keys(v)) {
    if (!allowed.has(k)) return invalid(`${path}${k}: Extra inputs are not permitted`);
  }
  return undefined;
}

function validateMessage(m: unknown, i: number): Invalid | undefined {
  const at = `messages.${i}`;
  if (!isRecord(m)) return invalid(`${at}: ${NOT_AN_OBJECT}`);
  const extra = extraKey(m, MESSAGE_KEYS, `${at}.`);
  if (extra) return extra;
  if (m.role === undefined) return invalid(`${at}.role: Field required`);
  if (m.role === 'system') {
    return invalid(
      'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.',
    );
  }
  if (m.role !== 'user' && m.role !== 'assistant') {
    return invalid(`${at}.role: Input should be 'user' or 'assistant'`);
  }
  if (m.content === undefined) return invalid(`${at}.content: Field required`);
  if (typeof m.content === 'string') return undefined;
  if (!Array.isArray(m.content)) return invalid(`${at}.content: Input should be a valid list`);
  for (let j = 0; j < m.content.length; j++) {
    const b: unknown = m.content[j];
    if (!isRecord(b)) return invalid(`${at}.content.${j}: ${NOT_AN_OBJECT}`);
    if (typeof b.type !== 'string') return invalid(`${at}.content.${j}.type: Field required`);
    if (b.type === 'text' && typeof b.text !== 'string')
      return invalid(`${at}.content.${j}.text.text: Field required`);
  }
  return undefined;
}

function validateTools(tools: unknown): Invalid | undefined {
  if (!Array.isArray(tools)) return invalid('tools: Input should be a valid list');
  for (let i = 0; i < tools.length; i++) {
    const t: unknown = tools[i];
    if (!isRecord(t)) return invalid(`tools.${i}: ${NOT_AN_OBJECT}`);
    // Server tools carry their own versioned `type`; only custom tools need a schema.
    if (t.type !== undefined && t.type !== 'custom' && t.type !== 'function') continue;
    if (typeof t.name !== 'string') return invalid(`tools.${i}.custom.name: Field required`);
    if (!isRecord(t.input_schema)) return invalid(`tools.${i}.custom.input_schema: Field required`);
  }
  return undefined;
}

function validateToolChoice(tc: unknown): Invalid | undefined {
  if (!isRecord(tc)) return invalid(`tool_choice: ${NOT_AN_OBJECT}`);
  if (typeof tc.type !== 'string' || !TOOL_CHOICES.includes(tc.type)) {
    return invalid(
      `tool_choice: Input tag '${String(tc.type)}' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'`,
    );
  }
  if (tc.type === 'tool' && typeof tc.name !== 'string')
    return invalid('tool_choice.tool.name: Field required');
  return undefined;
}

/** The fields and their types, field by field. */
function validateFields(body: Json): Invalid | undefined {
  const extra = extraKey(body, TOP_LEVEL, '');
  if (extra) return extra;
  if (body.model === undefined) return invalid('model: Field required');
  if (typeof body.model !== 'string') return invalid('model: Input should be a valid string');
  if (body.max_tokens === undefined) return invalid('max_tokens: Field required');
  if (typeof body.max_tokens !== 'number' || !Number.isInteger(body.max_tokens)) {
    return invalid('max_tokens: Input should be a valid integer');
  }
  if (body.max_tokens < 1) return invalid('max_tokens: Input should be greater than or equal to 1');
  if (body.messages === undefined) return invalid('messages: Field required');
  if (!Array.isArray(body.messages)) return invalid('messages: Input should be a valid list');
  for (let i = 0; i < body.messages.length; i++) {
    const bad = validateMessage(body.messages[i], i);
    if (bad) return bad;
  }
  const system = body.system;
  if (system !== undefined && typeof system !== 'string') {
    if (!Array.isArray(system)) return invalid('system: Input should be a valid string');
    for (let j = 0; j < system.length; j++) {
      const b: unknown = system[j];
      if (!isRecord(b) || b.type !== 'text' || typeof b.text !== 'string') {
        return invalid(`system.${j}: Input should be a valid text block`);
      }
    }
  }
  if (body.stream !== undefined && typeof body.stream !== 'boolean') {
    return invalid('stream: Input should be a valid boolean');
  }
  const stops = body.stop_sequences;
  if (stops !== undefined) {
    if (!Array.isArray(stops)) return invalid('stop_sequences: Input should be a valid list');
    const j = stops.findIndex((s) => typeof s !== 'string');
    if (j !== -1) return invalid(`stop_sequences.${j}: Input should be a valid string`);
  }
  const temp = body.temperature;
  if (temp !== undefined) {
    if (typeof temp !== 'number') return invalid('temperature: Input should be a valid number');
    // OpenAI allows up to 2; Anthropic does not.
    if (temp > 1) return invalid('temperature: Input should be less than or equal to 1');
    if (temp < 0) return invalid('temperature: Input should be greater than or equal to 0');
  }
  if (body.metadata !== undefined) {
    if (!isRecord(body.metadata)) return invalid(`metadata: ${NOT_AN_OBJECT}`);
    const bad = extraKey(body.metadata, METADATA_KEYS, 'metadata.');
    if (bad) return bad;
  }
  if (body.tools !== undefined) {
    const bad = validateTools(body.tools);
    if (bad) return bad;
  }
  if (body.tool_choice !== undefined) return validateToolChoice(body.tool_choice);
  return undefined;
}

function isEmptyContent(content: unknown): boolean {
  return content === '' || (Array.isArray(content) && content.length === 0);
}

/** Rules across fields: the conversation's shape, empty content, the breakpoint limit. */
function validateConversation(body: Json, messages: Json[]): Invalid | undefined {
  if (messages.length === 0) return invalid('messages: at least one message is required');
  // Anthropic's documented rules today merge consecutive same-role turns; the fake keeps the older,
  // stricter rules, so a translator that already alternates passes against both.
  if (messages[0]!.role !== 'user') return invalid('messages: first message must use the "user" role');
  for (let i = 1; i < messages.length; i++) {
    const role = messages[i]!.role;
    if (role === messages[i - 1]!.role) {
      return invalid(
        `messages: roles must alternate between "user" and "assistant", but found multiple "${String(role)}" roles in a row`,
      );
    }
  }
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const finalAssistant = i === messages.length - 1 && m.role === 'assistant';
    if (isEmptyContent(m.content) && !finalAssistant) {
      return invalid(
        `messages.${i}: all messages must have non-empty content except for the optional final assistant message`,
      );
    }
    if (
      Array.isArray(m.content) &&
      m.content.some((b) => isRecord(b) && b.type === 'text' && b.text === '')
    ) {
      return invalid('messages: text content blocks must be non-empty');
    }
  }
  let breakpoints = 0;
  for (const s of promptSegments(body)) if (s.breakpoint !== undefined) breakpoints++;
  if (breakpoints > 4) {
    return invalid(`A maximum of 4 blocks with cache_control may be provided. Found ${breakpoints}.`);
  }
  return undefined;
}

/** Returns the 400 Anthropic would answer with, or undefined when the request is acceptable. */
export function validateMessages(body: unknown): Invalid | undefined {
  if (!isRecord(body)) return invalid(NOT_AN_OBJECT);
  return validateFields(body) ?? validateConversation(body, body.messages as Json[]);
}
