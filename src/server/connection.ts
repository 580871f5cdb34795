import type { WebSocket } from 'ws';
import { encodeServerMessage, type ServerMessage } from '../protocol/index.js';

export interface ConnectionOptions {
  /** Bytes handed to the socket but not yet written, past which binary sends wait. */
  highWaterBytes: number;
  /** Level the backlog must fall to before a waiting sender resumes. */
  lowWaterBytes: number;
  /** How long the backlog may stay above the high watermark before `onStall` runs. */
  stallTimeoutMs: number;
  /** Told every change of the backlog (bytes, frames), so the server can sum all connections' into a gauge. */
  onBacklogChange?: (deltaBytes: number, deltaFrames: number) => void;
}

/**
 * The server's side of one WebSocket: ordered JSON and binary sends with a byte-counted
 * backlog (ws's `bufferedAmount` stays 0 until megabytes sit in kernel buffers, so it
 * cannot be used for backpressure), and a close that always follows the frames before it.
 */
export class ClientConnection {
  private backlogBytes = 0;
  private drainWaiters: (() => void)[] = [];
  private closing = false;
  private stallTimer: NodeJS.Timeout | undefined;
  /** Runs when the client stayed behind for `stallTimeoutMs` (it stopped reading). */
  onStall: (() => void) | undefined;

  constructor(
    private readonly ws: WebSocket,
    private readonly options: ConnectionOptions,
  ) {
    ws.on('close', () => {
      clearTimeout(this.stallTimer);
      this.releaseWaiters();
    });
  }

  /** True while frames can still be sent. */
  get open(): boolean {
    return !this.closing && this.ws.readyState === this.ws.OPEN;
  }

  get backlog(): number {
    return this.backlogBytes;
  }

  send(message: ServerMessage): void {
    if (!this.open) return;
    this.write(encodeServerMessage(message), false);
  }

  /** Sends one binary frame; resolves once the backlog is below the high watermark. */
  async sendBinary(data: Buffer): Promise<void> {
    if (!this.open) return;
    this.write(data, true);
    if (this.backlogBytes > this.options.highWaterBytes) {
      // The sender (the session's media pump, hence its generation) waits here; a client
      // that never catches up is closed rather than allowed to hold memory and a worker.
      this.stallTimer ??= setTimeout(() => this.onStall?.(), this.options.stallTimeoutMs);
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
  }

  /**
   * Closes and, if the peer does not complete the close handshake within `graceMs`
   * (a client that stopped reading never will), drops the TCP connection.
   */
  closeAndTerminate(code: number, reason: string, graceMs: number): void {
    this.close(code, reason);
    const timer = setTimeout(() => this.ws.terminate(), graceMs);
    timer.unref();
    this.ws.once('close', () => clearTimeout(timer));
  }

  /** Drops the TCP connection at once (dead peer). */
  terminate(): void {
    this.closing = true;
    this.ws.terminate();
    this.releaseWaiters();
  }

  /** Sends a close frame after everything already queued. Idempotent. */
  close(code: number, reason = ''): void {
    if (this.closing) return;
    this.closing = true;
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) {
      // Close reasons are limited to 123 bytes by RFC 6455.
      this.ws.close(code, Buffer.from(reason).subarray(0, 123).toString());
    }
    this.releaseWaiters();
  }

  private write(data: string | Buffer, binary: boolean): void {
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    this.backlogBytes += size;
    this.options.onBacklogChange?.(size, 1);
    this.ws.send(data, { binary }, () => {
      this.backlogBytes -= size;
      this.options.onBacklogChange?.(-size, -1);
      if (this.backlogBytes <= this.options.lowWaterBytes) {
        clearTimeout(this.stallTimer);
        this.stallTimer = undefined;
        this.releaseWaiters();
      }
    });
  }

  private releaseWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
