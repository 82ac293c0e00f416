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

/** Hop-by-hop names plus any that the message's own Connection header lists. */
export function hopByHopNames(connectionHeader: string | null | undefined): Set<string> {
  const names = new Set(HOP_BY_HOP_HEADERS);
  if (connectionHeader) {
    for (const token of connectionHeader.split(',')) {
      const name = token.trim().toLowerCase();
      if (name) names.add(name);
    }
  }
  return names;
}
