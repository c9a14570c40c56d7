// Node's 'clientError': a request its HTTP parser refused (malformed, ambiguous body framing,
// headers over the size limit) or one that arrived too slowly (server.headersTimeoutMs and
// server.requestTimeoutMs). No route ran, so the answer is written to the socket here, in
// OpenAI's error shape, and the connection closed: the parser cannot tell where a next request
// would start.
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { errors, type GatewayError } from '../errors.js';

/** The socket field Node's own clientError handling reads: the response in progress, if any. */
type HttpSocket = Duplex & { _httpMessage?: { headersSent: boolean } | null };

export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  // A reset connection has nobody left to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  // As Node's default handler (and unlike Fastify's): once a response on this socket has begun,
  // say a pipelined request's stream, our bytes would land inside its body.
  const inProgress = (socket as HttpSocket)._httpMessage;
  if (socket.writable && !inProgress?.headersSent) socket.write(rawResponse(clientErrorOf(err.code)));
  socket.destroy(err);
}

function clientErrorOf(code: string | undefined): GatewayError {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return errors.requestTimeout();
  if (code === 'HPE_HEADER_OVERFLOW') return errors.headersTooLarge();
  return errors.malformedHttp();
}

function rawResponse(ge: GatewayError): string {
  const body = JSON.stringify(ge.toBody());
  return (
    `HTTP/1.1 ${ge.status} ${STATUS_CODES[ge.status]}\r\n` +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    'connection: close\r\n\r\n' +
    body
  );
}
