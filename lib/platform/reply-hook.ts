import type { Logger } from '@nestjs/common';
import type { AbstractHttpAdapter } from '@nestjs/core';
import type { ServerResponse } from 'node:http';
import { GatewayResponse } from '../http/gateway-response.js';
import { sendAndReport } from '../http/send-gateway-response.js';
import { isMountPattern } from './mount-matcher.js';
import { rawResponse, routePatternOf } from './request-info.js';

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
      // Nothing sent (Node refused a header): the throw reaches Nest's exception filters, as
      // for a handler of its own whose header Node refuses.
      sendAndReport(body, rawResponse(response), logger);
      return;
    }
    const res = rawResponse(response) as ServerResponse & { req?: unknown };
    // A mounted app answered on the response itself, and an interceptor that maps every value
    // (a `{ data }` envelope) handed on its own in place of ALREADY_SENT: nothing is left to send.
    if (res.headersSent && isMountPattern(routePatternOf(res.req))) return;
    return reply(response, body, statusCode);
  };
}
