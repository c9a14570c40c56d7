// JSON schema for POST /v1/chat/completions. It checks the types of the fields the gateway itself
// reads (model, messages, stream, limits, sampling) so a wrong type is a 400 naming the field;
// everything else, known or new, passes through untouched for the upstream to judge.
const nullable = (schema: Record<string, unknown>): Record<string, unknown> => ({
  anyOf: [schema, { type: 'null' }],
});

export const chatCompletionsBodySchema = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    model: { type: 'string', minLength: 1 },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role'],
        properties: { role: { type: 'string' } },
      },
    },
    stream: nullable({ type: 'boolean' }),
    stream_options: nullable({
      type: 'object',
      properties: { include_usage: { type: 'boolean' } },
    }),
    max_tokens: nullable({ type: 'integer', minimum: 1 }),
    max_completion_tokens: nullable({ type: 'integer', minimum: 1 }),
    n: nullable({ type: 'integer', minimum: 1, maximum: 128 }),
    temperature: nullable({ type: 'number', minimum: 0, maximum: 2 }),
    top_p: nullable({ type: 'number', minimum: 0, maximum: 1 }),
    tools: { type: 'array', items: { type: 'object', required: ['type'] } },
    user: { type: 'string' },
  },
} as const;
