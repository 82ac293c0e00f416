import type { ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { GatewayResponse } from './gateway-response.js';

/**
 * Sends a GatewayResponse on a client's response as is: status, reason phrase, every header
 * (each Set-Cookie separately), and the body streamed with backpressure. Headers already set
 * on `res` (by CORS middleware or `@Header()`) stay unless the response overrides them.
 * Resolves when the body is sent; if the body breaks, the connection is destroyed so the
 * client sees a broken response rather than a truncated success.
 */
export async function sendGatewayResponse(response: GatewayResponse, res: ServerResponse): Promise<void> {
  if (res.headersSent) throw new Error('Cannot send a GatewayResponse: headers were already sent');
  res.statusCode = response.status;
  res.statusMessage = response.statusText;
  for (const [name, value] of response.headers) {
    if (name !== 'set-cookie') res.setHeader(name, value);
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);
  const body = response.body;
  if (!body) {
    res.end();
    return;
  }
  try {
    await pipeline(body, res);
  } catch (error) {
    res.destroy(error as Error);
    throw error;
  }
}
