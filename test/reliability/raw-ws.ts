/**
 * A WebSocket client written on a bare TCP socket, for the hostile clients of the
 * reliability suites: it can stop mid-handshake or mid-frame, announce a frame it never
 * sends, stop reading, or reset the connection, none of which a well-behaved client
 * library allows.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface RawFrame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

export const Opcode = { TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;

/** The request line and headers of a WebSocket upgrade to `path`. */
export function upgradeRequest(path: string, headers: Record<string, string> = {}): string {
  const lines = [
    `GET ${path} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** The header of a masked client frame announcing `length` payload bytes, and its mask. */
export function frameHeader(opcode: number, length: number, fin = true): { header: Buffer; mask: Buffer } {
  const mask = randomBytes(4);
  let header: Buffer;
  if (length < 126) {
    header = Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | length]);
  } else if (length < 65536) {
    header = Buffer.alloc(4);
    header[0] = (fin ? 0x80 : 0) | opcode;
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = (fin ? 0x80 : 0) | opcode;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  return { header: Buffer.concat([header, mask]), mask };
}

/** A whole masked client frame. */
export function clientFrame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const { header, mask } = frameHeader(opcode, data.length, fin);
  const masked = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) masked[i] = (data[i] as number) ^ (mask[i % 4] as number);
  return Buffer.concat([header, masked]);
}

export class RawWsClient {
  /** Every byte after the HTTP response head, unparsed. */
  private pending = Buffer.alloc(0);
  readonly frames: RawFrame[] = [];
  status = 0;
  responseHead = '';
  closed = false;
  bytesReceived = 0;
  /** Answer the server's pings while reading (on by default). */
  answerPings = true;
  private listeners: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
  }

  /** Opens a TCP connection; nothing is sent yet. */
  static open(port: number): Promise<RawWsClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => resolve(new RawWsClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Opens a connection and completes a WebSocket handshake to `path` (the HTTP status is kept in `status`). */
  static async handshake(port: number, path = '/v1/stream', headers: Record<string, string> = {}): Promise<RawWsClient> {
    const client = await RawWsClient.open(port);
    client.startReading();
    client.socket.write(upgradeRequest(path, headers));
    await client.until(() => client.status !== 0 || client.closed, 'the upgrade response');
    return client;
  }

  /** Starts reading and parsing what the server sends (a client that never calls this never reads). */
  startReading(): void {
    this.socket.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      this.pending = Buffer.concat([this.pending, chunk]);
      if (this.status === 0) {
        const end = this.pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        this.responseHead = this.pending.subarray(0, end).toString('latin1');
        this.status = Number(/^HTTP\/1\.1 (\d+)/.exec(this.responseHead)?.[1] ?? 0);
        this.pending = this.pending.subarray(end + 4);
        if (this.status !== 101) return this.notify();
      }
      this.parseFrames();
      this.notify();
    });
  }

  write(data: Buffer | string): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  sendText(text: string): void {
    this.write(clientFrame(Opcode.TEXT, text));
  }

  /** Sends a TCP reset (SO_LINGER 0) instead of a FIN. */
  reset(): void {
    if (!this.socket.destroyed) this.socket.resetAndDestroy();
  }

  /** JSON text frames received so far. */
  get messages(): Record<string, unknown>[] {
    return this.frames.filter((f) => f.opcode === Opcode.TEXT).map((f) => JSON.parse(f.payload.toString('utf8')) as Record<string, unknown>);
  }

  /** The close code the server sent, if it sent a close frame. */
  get closeCode(): number | undefined {
    const close = this.frames.find((f) => f.opcode === Opcode.CLOSE);
    return close && close.payload.length >= 2 ? close.payload.readUInt16BE(0) : undefined;
  }

  async until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; frames: ${this.frames.map((f) => f.opcode).join(',')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        this.listeners.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private parseFrames(): void {
    for (;;) {
      const buf = this.pending;
      if (buf.length < 2) return;
      const b0 = buf[0] as number;
      const b1 = buf[1] as number;
      let length = b1 & 0x7f;
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
      const frame = { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload: Buffer.from(buf.subarray(offset, offset + length)) };
      this.frames.push(frame);
      this.pending = buf.subarray(offset + length);
      // While it reads, it answers pings like any client; once it stops reading, it cannot.
      if (frame.opcode === Opcode.PING && this.answerPings) this.write(clientFrame(Opcode.PONG, frame.payload));
    }
  }

  private notify(): void {
    const listeners = this.listeners;
    this.listeners = [];
    for (const l of listeners) l();
  }
}
