/**
 * A hostile WebSocket client on a bare TCP socket, for benchmarks: it completes the
 * handshake, can read the server's first replies and then stop reading for good, and
 * writes pre-built frames as fast as the socket takes them. Frames are masked with an
 * all-zero key (legal, RFC 6455 §5.3), so a payload is sent as is: a million frames or a
 * 45 MB opening frame cost no masking work on the client side.
 *
 * It keeps only what a run needs (JSON text frames while reading, the close code), so
 * thousands of them fit in one process.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export const Opcode = { TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;

/**
 * The header of a client frame carrying `length` payload bytes, masked with `mask` (4
 * bytes; default the zero key, which leaves the payload as is).
 */
export function frameHeader(opcode: number, length: number, mask: Buffer = ZERO_MASK): Buffer {
  let header: Buffer;
  if (length < 126) {
    header = Buffer.alloc(2 + 4);
    header[1] = 0x80 | length;
  } else if (length < 65536) {
    header = Buffer.alloc(4 + 4);
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10 + 4);
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  header[0] = 0x80 | opcode; // FIN
  mask.copy(header, header.length - 4);
  return header;
}

const ZERO_MASK = Buffer.alloc(4);

/**
 * A whole client frame. With `randomMask` the payload is masked as a browser masks it
 * (the server then has to unmask it, which costs it time on large frames); without, the
 * zero key sends it as is.
 */
export function frame(opcode: number, payload: Buffer | string = Buffer.alloc(0), randomMask = false): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  if (!randomMask) return Buffer.concat([frameHeader(opcode, data.length), data]);
  const mask = randomBytes(4);
  const header = frameHeader(opcode, data.length, mask);
  const out = Buffer.allocUnsafe(header.length + data.length);
  header.copy(out, 0);
  const body = out.subarray(header.length);
  // Whole 32-bit words at a time, then the tail.
  const key = mask.readUInt32LE(0);
  const words = data.length >>> 2;
  for (let i = 0; i < words; i++) body.writeUInt32LE((data.readUInt32LE(i * 4) ^ key) >>> 0, i * 4);
  for (let i = words * 4; i < data.length; i++) body[i] = (data[i] as number) ^ (mask[i & 3] as number);
  return out;
}

/** `count` copies of `one` back to back, as one buffer (a burst written with one call). */
export function repeated(one: Buffer, count: number): Buffer {
  const out = Buffer.allocUnsafe(one.length * count);
  for (let i = 0; i < count; i++) one.copy(out, i * one.length);
  return out;
}

export class RawSocket {
  /** When the TCP connection closed (performance.now()), and whether it ended in an error (a reset). */
  readonly closed: Promise<{ at: number; error: string | undefined }>;
  /** JSON text frames received while reading. */
  readonly messages: { message: Record<string, unknown>; at: number }[] = [];
  /** The close code the server sent, if one arrived while reading, and when. */
  closeCode: number | undefined;
  closeFrameAt: number | undefined;
  closedAt: number | undefined;
  bytesWritten = 0;
  /** Bytes read after `discardIncoming()`. */
  bytesRead = 0;
  private pending: Buffer = Buffer.alloc(0);
  private upgraded = false;
  status = 0;
  private waiters: (() => void)[] = [];
  private lastError: string | undefined;

  private constructor(readonly socket: Socket) {
    socket.on('error', (err) => (this.lastError = (err as NodeJS.ErrnoException).code ?? err.message));
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.closedAt = performance.now();
        resolve({ at: this.closedAt, error: this.lastError });
        this.wake();
      }),
    );
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  /** Connects to `url` (`ws://host:port/path`) and completes the WebSocket handshake. */
  static async open(url: string, timeoutMs = 30_000): Promise<RawSocket> {
    const { hostname, port, pathname } = new URL(url);
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(Number(port), hostname);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    socket.setNoDelay(true);
    const client = new RawSocket(socket);
    socket.write(
      [
        `GET ${pathname} HTTP/1.1`,
        `Host: ${hostname}:${port}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        'Sec-WebSocket-Version: 13',
        '',
        '',
      ].join('\r\n'),
    );
    await client.until(() => client.status !== 0 || client.isClosed, 'the upgrade response', timeoutMs);
    if (client.status !== 101) {
      socket.destroy();
      throw new Error(`upgrade refused: HTTP ${client.status || 'none (closed)'}`);
    }
    return client;
  }

  get isClosed(): boolean {
    return this.closedAt !== undefined;
  }

  /** Reads on but keeps nothing: counts the bytes (for a client that drains huge replies). */
  discardIncoming(): void {
    this.socket.removeAllListeners('data');
    this.socket.on('data', (chunk: Buffer) => (this.bytesRead += chunk.length));
  }

  /** Stops reading the socket for good: the server's frames pile up in kernel buffers, then in the server. */
  stopReading(): void {
    this.socket.pause();
    this.socket.removeAllListeners('data');
  }

  /**
   * Writes `data`; resolves once the socket has taken it (its buffer drained) or the
   * connection closed. True when the data went, false when the connection is gone.
   */
  write(data: Buffer): Promise<boolean> {
    if (this.socket.destroyed) return Promise.resolve(false);
    this.bytesWritten += data.length;
    if (this.socket.write(data)) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
        resolve(ok);
      };
      const onDrain = () => done(true);
      const onClose = () => done(false);
      this.socket.on('drain', onDrain);
      this.socket.on('close', onClose);
    });
  }

  sendText(text: string): Promise<boolean> {
    return this.write(frame(Opcode.TEXT, text));
  }

  /** The first JSON message of `type` (received so far or later). */
  async next(type: string, timeoutMs = 30_000): Promise<{ message: Record<string, unknown>; at: number }> {
    let found: { message: Record<string, unknown>; at: number } | undefined;
    await this.until(() => (found = this.messages.find((m) => m.message.type === type)) !== undefined || this.isClosed, type, timeoutMs);
    if (!found) throw new Error(`connection closed before ${type} (close code ${this.closeCode ?? 'none'})`);
    return found;
  }

  /** Waits until `predicate` holds (checked on every arrival and at least every 100 ms). */
  async until(predicate: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Drops the connection (FIN, or a reset when unread data is left). */
  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    if (!this.upgraded) {
      const end = this.pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.pending.subarray(0, end).toString('latin1');
      this.status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0);
      this.pending = this.pending.subarray(end + 4);
      this.upgraded = true;
    }
    this.parseFrames();
    this.wake();
  }

  private parseFrames(): void {
    for (;;) {
      const buf = this.pending;
      if (buf.length < 2) return;
      const opcode = (buf[0] as number) & 0x0f;
      let length = (buf[1] as number) & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buf.length < 4) return;
        length = buf.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buf.length < 10) return;
        length = Number(buf.readBigUInt64BE(2));
        offset = 10;
      }
      if (buf.length < offset + length) return;
      const payload = buf.subarray(offset, offset + length);
      if (opcode === Opcode.TEXT) {
        this.messages.push({ message: JSON.parse(payload.toString('utf8')) as Record<string, unknown>, at: performance.now() });
      } else if (opcode === Opcode.CLOSE) {
        this.closeFrameAt ??= performance.now();
        if (payload.length >= 2) this.closeCode = payload.readUInt16BE(0);
      }
      this.pending = buf.subarray(offset + length);
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
