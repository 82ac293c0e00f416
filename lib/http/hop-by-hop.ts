/** Connection-level headers (RFC 9110 7.6.1) that never cross a gateway in either direction. */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
]);

/**
 * Hop-by-hop names plus any that the message's own Connection header lists; the shared set
 * itself when it lists none besides them (`keep-alive`, what browsers send).
 */
export function hopByHopNames(connectionHeader: string | null | undefined): ReadonlySet<string> {
  // The usual value, on requests and answers alike: no need to take it apart.
  if (connectionHeader === 'keep-alive') return HOP_BY_HOP_HEADERS;
  let names: Set<string> | undefined;
  if (connectionHeader) {
    for (const token of connectionHeader.split(',')) {
      const name = token.trim().toLowerCase();
      if (name && !HOP_BY_HOP_HEADERS.has(name)) (names ??= new Set(HOP_BY_HOP_HEADERS)).add(name);
    }
  }
  return names ?? HOP_BY_HOP_HEADERS;
}
