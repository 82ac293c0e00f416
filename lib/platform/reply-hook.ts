import type { Logger } from '@nestjs/common';
import type { AbstractHttpAdapter } from '@nestjs/core';
import type { ServerResponse } from 'node:http';
import { GatewayResponse } from '../http/gateway-response.js';
import { sendOrStream } from '../http/send-gateway-response.js';
import { rawResponse } from './request-info.js';

/** Returned by a mount handler whose app already answered on the client's response. */
export const ALREADY_SENT = Symbol.for('nest-gateway.alreadySent');

const HOOKED = Symbol.for('nest-gateway.replyHooked');

/**
 * Teaches the adapter's `reply()` (what Nest calls with a handler's return value) to send a
 * GatewayResponse as is, and to leave alone a response a mounted app wrote itself. This is
 * how any handler may return a GatewayResponse without a global interceptor.
 */
export function hookAdapterReply(adapter: AbstractHttpAdapter, logger: Logger): void {
  const hooked = adapter as AbstractHttpAdapter & { [HOOKED]?: true };
  if (hooked[HOOKED]) return;
  hooked[HOOKED] = true;
  const reply = adapter.reply.bind(adapter);
  adapter.reply = (response: unknown, body: unknown, statusCode?: number) => {
    if (body === ALREADY_SENT) return;
    if (GatewayResponse.isGatewayResponse(body)) {
      const res = rawResponse(response);
      let sending: Promise<void> | undefined;
      try {
        sending = sendOrStream(body, res);
      } catch (error) {
        if (res.headersSent) return reportBroken(logger, res, error as NodeJS.ErrnoException);
        // Nothing went out (Node refused a header): Nest's exception filters answer, as for a
        // handler of its own whose header Node refuses; the app sees its response closed.
        body.body?.destroy();
        throw error;
      }
      sending?.catch((error: NodeJS.ErrnoException) => reportBroken(logger, res, error));
      return;
    }
    return reply(response, body, statusCode);
  };
}

/** A client that goes away is routine; a body that breaks is worth a line. */
function reportBroken(logger: Logger, res: ServerResponse, error: NodeJS.ErrnoException): void {
  if (error.code !== 'ERR_STREAM_PREMATURE_CLOSE') {
    logger.warn(`Response body for ${res.req?.url ?? 'a request'} broke off: ${error.message}`);
  }
}
