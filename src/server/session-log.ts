import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';

/** Keeps a client-chosen id from steering the file name (no separators, dots or control chars). */
export function sanitiseFileComponent(value: string, maxLength = 64): string {
  const cleaned = value.replace(/[^A-Za-z0-9_-]+/g, '_').replace(/^_+|_+$/g, '');
  return cleaned.slice(0, maxLength) || 'anonymous';
}

/**
 * Optional per-session JSONL event log: one line per event with the session id, event
 * name, ISO timestamp and payload. Writes are buffered by the stream; nothing blocks.
 */
export class SessionEventLog {
  private stream: WriteStream | undefined;
  private readonly path: string;

  constructor(
    dir: string,
    private readonly sessionId: string,
    clientId: string | undefined,
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
    this.stream?.write(
      `${JSON.stringify({ session_id: this.sessionId, event, ts: new Date().toISOString(), payload })}\n`,
    );
  }

  close(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    if (!stream) return Promise.resolve();
    return new Promise((resolve) => stream.end(resolve));
  }
}
