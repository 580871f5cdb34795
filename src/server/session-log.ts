import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';

/** Keeps a client-chosen id from steering the file name (no separators, dots or control chars). */
export function sanitiseFileComponent(value: string, maxLength = 64): string {
  const cleaned = value.replace(/[^A-Za-z0-9_-]+/g, '_').replace(/^_+|_+$/g, '');
  return cleaned.slice(0, maxLength) || 'anonymous';
}

/** Longest string kept whole in a logged payload; clients choose these strings. */
const MAX_LOGGED_STRING = 2048;
/** Most array items and object members logged per level. */
const MAX_LOGGED_ITEMS = 64;
const MAX_LOGGED_DEPTH = 6;

/** A bounded copy of a client-influenced value: long strings cut, long lists and deep nesting elided. */
export function boundedForLog(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') {
    return value.length > MAX_LOGGED_STRING ? `${value.slice(0, MAX_LOGGED_STRING)}… (${value.length} chars)` : value;
  }
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_LOGGED_DEPTH) return Array.isArray(value) ? '[…]' : '{…}';
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_LOGGED_ITEMS).map((item) => boundedForLog(item, depth + 1));
    if (value.length > MAX_LOGGED_ITEMS) items.push(`… ${value.length - MAX_LOGGED_ITEMS} more`);
    return items;
  }
  const out: Record<string, unknown> = {};
  let count = 0;
  for (const key in value) {
    if (!Object.prototype.hasOwnProperty.call(value, key)) continue;
    if (count++ >= MAX_LOGGED_ITEMS) {
      out['…'] = 'more members elided';
      break;
    }
    out[key] = boundedForLog((value as Record<string, unknown>)[key], depth + 1);
  }
  return out;
}

/**
 * Optional per-session JSONL event log: one line per event with the session id, event
 * name, ISO timestamp and payload. A client influences what is logged, so each line is
 * bounded (`boundedForLog`) and the file stops growing at `maxBytes`, after one line
 * saying so. Writes are buffered by the stream; nothing blocks.
 */
export class SessionEventLog {
  private stream: WriteStream | undefined;
  private readonly path: string;
  private written = 0;
  private full = false;

  constructor(
    dir: string,
    private readonly sessionId: string,
    clientId: string | undefined,
    private readonly maxBytes: number,
  ) {
    mkdirSync(dir, { recursive: true });
    const prefix = clientId ? `${sanitiseFileComponent(clientId)}-` : '';
    this.path = join(dir, `${prefix}${sessionId}.jsonl`);
    this.stream = createWriteStream(this.path, { flags: 'a', mode: 0o600 });
    this.stream.on('error', () => {
      // A full disk must not take the session down; the server log still has the events.
      this.stream = undefined;
    });
  }

  get filePath(): string {
    return this.path;
  }

  write(event: string, payload: Record<string, unknown> = {}): void {
    if (!this.stream || this.full) return;
    const line = `${JSON.stringify({ session_id: this.sessionId, event, ts: new Date().toISOString(), payload: boundedForLog(payload) })}\n`;
    const size = Buffer.byteLength(line);
    if (this.written + size > this.maxBytes) {
      this.full = true;
      this.stream.write(`${JSON.stringify({ session_id: this.sessionId, event: 'log_truncated', ts: new Date().toISOString(), payload: { max_bytes: this.maxBytes } })}\n`);
      return;
    }
    this.written += size;
    this.stream.write(line);
  }

  close(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    if (!stream) return Promise.resolve();
    return new Promise((resolve) => stream.end(resolve));
  }
}
