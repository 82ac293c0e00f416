import { BadRequestException } from '@nestjs/common';
import { posix } from 'node:path';
import type { GatewayExchange } from '../apps/gateway-app.js';
import { hopByHopNames } from '../http/hop-by-hop.js';
import { headerValue } from '../http/raw-headers.js';
import type { GatewayEnv } from '../interfaces/gateway-options.interface.js';

export const SERVER_SOFTWARE = 'nest-gateway';

/** How the meta-variables of one request are built (shared by CGI and FastCGI). */
export interface CgiVariableSettings {
  /** SCRIPT_FILENAME: the file that runs. */
  scriptFilename: string;
  /** SCRIPT_NAME and decoded PATH_INFO, when the script is found inside the path (FastCGI document roots). */
  split?: { scriptName: string; pathInfo: string };
  /** When set, PATH_TRANSLATED and DOCUMENT_ROOT are derived from it. */
  documentRoot?: string;
  /** Pass Authorization and Proxy-Authorization on as HTTP_* variables. */
  passAuthorization: boolean;
  /** AUTH_TYPE sent along with REMOTE_USER. */
  authType: string;
  /**
   * Length of the request body once known; undefined when there is none, or `'unknown'` for a
   * body streamed as it comes (CONTENT_TYPE but no CONTENT_LENGTH).
   */
  contentLength: number | 'unknown' | undefined;
  /** Fixed variables of the app; they override request-derived ones, and the call's env overrides them. */
  env?: GatewayEnv;
}

// Request headers that never become HTTP_* variables: the body's own (CONTENT_TYPE and
// CONTENT_LENGTH say it), httpoxy's Proxy (CVE-2016-5385) and credentials (opt-in).
const NOT_FORWARDED = new Set(['content-type', 'content-length', 'proxy']);
const CREDENTIALS = new Set(['authorization', 'proxy-authorization']);
// Only these names map one to one onto HTTP_*: `_` and anything else could collide or smuggle.
const SAFE_NAME = /^[A-Za-z0-9-]+$/;

/**
 * The RFC 3875 meta-variables of a request plus the fixed environment: a new object built
 * from scratch, never from the parent's environment.
 */
export function cgiVariables(exchange: GatewayExchange, settings: CgiVariableSettings): Record<string, string> {
  const req = exchange.req;
  const socket = req.socket;
  const pathInfo = settings.split?.pathInfo ?? decodePathInfo(exchange.pathInfo);
  const scriptName = settings.split?.scriptName ?? decodeScriptName(exchange.prefix);
  const { hostname } = splitHost(exchange.host);
  const vars: Record<string, string> = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE,
    SERVER_NAME: hostname || socket?.localAddress || 'localhost',
    SERVER_PORT: String(socket?.localPort ?? (exchange.protocol === 'https' ? 443 : 80)),
    SERVER_ADDR: socket?.localAddress ?? '',
    SERVER_PROTOCOL: `HTTP/${req.httpVersion || '1.1'}`,
    REQUEST_METHOD: exchange.method,
    REQUEST_SCHEME: exchange.protocol,
    REQUEST_URI: exchange.originalUrl,
    QUERY_STRING: exchange.search.slice(1),
    SCRIPT_NAME: scriptName,
    SCRIPT_FILENAME: settings.scriptFilename,
    PATH_INFO: pathInfo,
    DOCUMENT_URI: scriptName + pathInfo,
    REMOTE_ADDR: exchange.remoteAddress ?? '',
    // php-cgi (cgi.force_redirect) refuses to run without it; nginx's fastcgi_params send it too.
    REDIRECT_STATUS: '200',
  };
  if (socket?.remotePort !== undefined && exchange.remoteAddress === socket.remoteAddress) {
    vars.REMOTE_PORT = String(socket.remotePort);
  }
  if (exchange.protocol === 'https') vars.HTTPS = 'on';
  if (settings.documentRoot !== undefined) {
    vars.DOCUMENT_ROOT = settings.documentRoot;
    if (pathInfo) vars.PATH_TRANSLATED = posix.join(settings.documentRoot, pathInfo);
  }
  if (exchange.remoteUser !== undefined) {
    vars.REMOTE_USER = exchange.remoteUser;
    vars.AUTH_TYPE = settings.authType;
  }
  if (settings.contentLength !== undefined) {
    if (settings.contentLength !== 'unknown') vars.CONTENT_LENGTH = String(settings.contentLength);
    const type = headerValue(exchange.rawHeaders, 'content-type');
    if (type !== undefined) vars.CONTENT_TYPE = type;
  }
  Object.assign(vars, httpVariables(exchange, settings.passAuthorization));
  assignEnv(vars, settings.env);
  assignEnv(vars, exchange.env);
  return vars;
}

/**
 * PATH_INFO decoded, as CGI wants it. Refused with a 400: NUL, an encoded `/` (it would change
 * the segments a script sees) and `.`/`..` segments (path traversal via PATH_TRANSLATED).
 */
export function decodePathInfo(raw: string): string {
  if (/%2f|%00|\0|%5c/i.test(raw)) throw new BadRequestException('Path contains an encoded slash, backslash or NUL');
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new BadRequestException('Path is not valid percent-encoded UTF-8');
  }
  if (decoded.split('/').some((segment) => segment === '..' || segment === '.')) {
    throw new BadRequestException('Path contains a dot segment');
  }
  return decoded;
}

/**
 * SCRIPT_NAME decoded like PATH_INFO (RFC 3875 4.1.13, as Apache, nginx and WSGI have it): a
 * parameterised mount's prefix holds what the client encoded, and an encoded one would be
 * encoded again by apps that build their URLs from it (Django, Mercurial).
 */
export function decodeScriptName(prefix: string): string {
  return prefix.includes('%') || prefix.includes('/.') ? decodePathInfo(prefix) : prefix;
}

/** HTTP_* variables: repeats joined with `, ` (Cookie with `; `), unsafe names dropped. */
function httpVariables(exchange: GatewayExchange, passAuthorization: boolean): Record<string, string> {
  const raw = exchange.rawHeaders;
  const hopByHop = hopByHopNames(headerValue(raw, 'connection'));
  const joined = new Map<string, string[]>();
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (!SAFE_NAME.test(name) || NOT_FORWARDED.has(name) || hopByHop.has(name)) continue;
    if (name === exchange.identityHeader) continue; // the principal travels as REMOTE_USER
    if (CREDENTIALS.has(name) && !passAuthorization) continue;
    const values = joined.get(name);
    if (values) values.push(raw[i + 1]);
    else joined.set(name, [raw[i + 1]]);
  }
  const vars: Record<string, string> = {};
  for (const [name, values] of joined) {
    vars['HTTP_' + name.toUpperCase().replace(/-/g, '_')] = asSent(values.join(name === 'cookie' ? '; ' : ', '));
  }
  return vars;
}

/**
 * Node reads header bytes as latin1, and variables are written out as UTF-8: UTF-8 the client
 * sent would arrive double-encoded. Bytes that are valid UTF-8 go on as the client sent them.
 */
function asSent(value: string): string {
  if (!/[\x80-\xff]/.test(value)) return value;
  const bytes = Buffer.from(value, 'latin1');
  const text = bytes.toString('utf8');
  return Buffer.byteLength(text) === bytes.length && !text.includes('\ufffd') ? text : value;
}

function assignEnv(vars: Record<string, string>, env: GatewayEnv | undefined): void {
  for (const [name, value] of Object.entries(env ?? {})) {
    if (value === undefined) delete vars[name];
    else vars[name] = String(value);
  }
}

function splitHost(host: string): { hostname: string } {
  const bracket = host.startsWith('[') ? host.indexOf(']') : -1;
  if (bracket !== -1) return { hostname: host.slice(0, bracket + 1) };
  const colon = host.lastIndexOf(':');
  const hostname = colon === -1 ? host : host.slice(0, colon);
  // The Host header comes from the client: keep it only if it looks like a host name.
  return { hostname: /^[A-Za-z0-9.-]+$/.test(hostname) ? hostname : '' };
}

/** The variables that the fixed environment may take from the parent process. */
export function inheritedEnvironment(names: readonly string[]): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const name of names) {
    const value = process.env[name];
    if (value !== undefined) vars[name] = value;
  }
  return vars;
}
