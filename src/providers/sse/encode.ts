// Events -> bytes on the client side: OpenAI frames each chunk as `data: <json>\n\n` and ends a
// successful stream with `data: [DONE]\n\n` (https://platform.openai.com/docs/api-reference/chat/streaming).

export const SSE_DONE = 'data: [DONE]\n\n';

export function encodeSseData(data: string): string {
  // A payload with line breaks needs one `data:` line per line to survive the round trip.
  if (data.includes('\n') || data.includes('\r'))
    return `data: ${data.split(/\r\n|\r|\n/).join('\ndata: ')}\n\n`;
  return `data: ${data}\n\n`;
}
