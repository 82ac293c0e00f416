import { STATUS_CODES } from 'node:http';

export function defaultStatusText(status: number): string {
  return STATUS_CODES[status] ?? '';
}
