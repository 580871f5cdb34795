import type { WebSocket } from 'ws';
import { Notifier } from '../async/index.js';
import { encodeServerMessage, type ServerMessage } from '../protocol/index.js';
import { onOversizeFrame, setMaxFrameBytes } from './frame-limit.js';

export interface ConnectionLimits {
  /** Backlog (bytes handed to the socket, not yet written) past which the client's frames stop being read and media sends wait. */
  highWaterBytes: number;
  /** Backlog at which reading and waiting senders resume. */
  lowWaterBytes: number;
  /** Backlog past which the client is given up on at once. */
  hardLimitBytes: number;
  /** How long the backlog may stay above the high watermark before the client is given up on. */
  stallTimeoutMs: number;
}

export interface ConnectionHooks {
  /** Told every change of the backlog (bytes, frames), so the server can sum all connections' into a gauge. */
  onBacklogChange?: (deltaBytes: number, deltaFrames: number) => void;
}

/**
 * What a queued frame costs beyond its payload: ws's header and callback, the socket's
 * write request. Counted so a flood of tiny frames fills the budget as fast as the
 * memory it takes, not by its payload bytes alone (measured: about 0.5-0.9 KiB each).
 */
export const FRAME_OVERHEAD_BYTES = 512;

/**
 * Frames one connection may have handled in one event-loop turn. One socket read can
 * hold thousands of tiny frames, each earning a reply; past this, the rest wait for the
 * next turn, so one client's burst never holds the loop while others wait.
 */
export const FRAMES_PER_TURN = 128;

/** An incoming frame: a WebSocket message, or a ping the server owes a pong for. */
type Incoming = { kind: 'message'; data: Buffer; isBinary: boolean } | { kind: 'ping'; data: Buffer };

/**
 * The server's side of one WebSocket, with one memory budget for everything sent on it.
 *
 * Every frame the server sends (media, JSON replies, errors, pongs) counts in one byte
 * backlog; `ws`'s `bufferedAmount` stays 0 until megabytes sit in kernel buffers, so the
 * connection counts itself, from send to send callback. Past the high watermark the
 * client's socket is no longer read, so its requests stop producing replies (frames
 * `ws` had already parsed are held and handled, in order, once the backlog drains), and
 * media senders wait. A client over the hard ceiling, or above the high watermark for the
 * stall timeout, is reported through `onGiveUp`.
 */
export class ClientConnection {
  private backlogBytes = 0;
  private readonly drained = new Notifier();
  private closing = false;
  /** Why reading is paused: the send budget, or a step that must finish before the next frame is handled. */
  private readonly pausedFor = new Set<'budget' | 'init' | 'turn'>();
  private framesThisTurn = 0;
  private turnScheduled = false;
  private readonly held: Incoming[] = [];
  private stallTimer: NodeJS.Timeout | undefined;
  private handler: ((data: Buffer, isBinary: boolean) => void) | undefined;
  /** The client stopped reading: its backlog passed the ceiling, or stayed high past the stall timeout. */
  onGiveUp: ((reason: 'hard_limit' | 'stall') => void) | undefined;
  /** The client sent a frame over the current size limit (refused at its header). */
  onOversize: (() => void) | undefined;

  constructor(
    private readonly ws: WebSocket,
    private readonly limits: ConnectionLimits,
    private readonly hooks: ConnectionHooks = {},
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => this.receive({ kind: 'message', data, isBinary }));
    // Pongs are sent by this class (the server is created with autoPong off), so they count in the backlog.
    ws.on('ping', (data: Buffer) => this.receive({ kind: 'ping', data }));
    ws.on('close', () => {
      clearTimeout(this.stallTimer);
      this.held.length = 0;
      this.drained.notify();
    });
    onOversizeFrame(ws, () => this.onOversize?.());
  }

  /** True while frames can still be sent. */
  get open(): boolean {
    return !this.closing && this.ws.readyState === this.ws.OPEN;
  }

  get backlog(): number {
    return this.backlogBytes;
  }

  /**
   * Holds the client's frames (and stops reading its socket) until `resumeReading` with
   * the same reason; used while the opening frame is applied.
   */
  pauseReading(reason: 'init'): void {
    this.pause(reason);
  }

  resumeReading(reason: 'init'): void {
    this.unpause(reason);
  }

  /** Handles the client's frames, one at a time, in order, while the budget allows reading. */
  onMessage(handler: (data: Buffer, isBinary: boolean) => void): void {
    this.handler = handler;
  }

  /**
   * Largest frame accepted from now on; a larger one is refused as soon as its header is
   * read. False when this `ws` does not allow it (the caller checks sizes itself then).
   */
  limitFrames(bytes: number): boolean {
    return setMaxFrameBytes(this.ws, bytes);
  }

  send(message: ServerMessage): void {
    if (!this.open) return;
    this.write(encodeServerMessage(message), false);
  }

  /** Sends a text frame encoded beforehand as UTF-8 bytes (a reply sent many times is encoded once). */
  sendEncoded(bytes: Buffer): void {
    if (!this.open) return;
    this.write(bytes, false);
  }

  /** Sends one binary frame; resolves once the backlog is back at the low watermark or the connection is gone. */
  async sendBinary(data: Buffer): Promise<void> {
    if (!this.open) return;
    this.write(data, true);
    while (this.open && this.backlogBytes > this.limits.highWaterBytes) await this.drained.wait();
  }

  /**
   * Closes, and if the peer does not complete the close handshake within `graceMs` (a
   * client that stopped reading never will), drops the TCP connection.
   */
  closeAndDrop(code: number, reason: string, graceMs: number): void {
    this.close(code, reason);
    const timer = setTimeout(() => this.ws.terminate(), graceMs);
    timer.unref();
    this.ws.once('close', () => clearTimeout(timer));
  }

  /** Sends a close frame after everything already queued. Idempotent. */
  close(code: number, reason = ''): void {
    if (this.closing) return;
    this.closing = true;
    this.held.length = 0;
    // Read again so the peer's close frame is seen and the handshake completes; frames
    // that arrive meanwhile are dropped (see receive()).
    this.pausedFor.clear();
    this.ws.resume();
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) {
      // Close reasons are limited to 123 bytes by RFC 6455.
      this.ws.close(code, Buffer.from(reason).subarray(0, 123).toString());
    }
    this.drained.notify();
  }

  private get readingPaused(): boolean {
    return this.pausedFor.size > 0;
  }

  private pause(reason: 'budget' | 'init' | 'turn'): void {
    if (this.pausedFor.has(reason)) return;
    this.pausedFor.add(reason);
    this.ws.pause();
  }

  /** Handles held frames, then reads again, unless something else still holds reading. */
  private unpause(reason: 'budget' | 'init' | 'turn'): void {
    if (!this.pausedFor.delete(reason)) return;
    // Held frames go first; one of them may pause reading anew.
    while (!this.readingPaused && !this.closing && this.held.length > 0) this.dispatchCounted(this.held.shift() as Incoming);
    if (!this.readingPaused && !this.closing) this.ws.resume();
  }

  private receive(frame: Incoming): void {
    if (this.closing) return;
    if (this.readingPaused || this.held.length > 0) {
      this.held.push(frame);
      return;
    }
    this.dispatchCounted(frame);
  }

  /** Handles a frame within this turn's allowance; the one that uses it up pauses reading until the next turn. */
  private dispatchCounted(frame: Incoming): void {
    this.framesThisTurn += 1;
    if (!this.turnScheduled) {
      this.turnScheduled = true;
      setImmediate(() => {
        this.turnScheduled = false;
        this.framesThisTurn = 0;
        this.unpause('turn');
      });
    }
    if (this.framesThisTurn >= FRAMES_PER_TURN) this.pause('turn');
    this.dispatch(frame);
  }

  private dispatch(frame: Incoming): void {
    if (frame.kind === 'ping') {
      if (this.open) this.pong(frame.data);
      return;
    }
    this.handler?.(frame.data, frame.isBinary);
  }

  private pong(data: Buffer): void {
    const size = data.length + FRAME_OVERHEAD_BYTES;
    this.account(size, 1);
    this.ws.pong(data, false, () => this.written(size));
  }

  private write(data: string | Buffer, binary: boolean): void {
    const size = (typeof data === 'string' ? Buffer.byteLength(data) : data.length) + FRAME_OVERHEAD_BYTES;
    this.account(size, 1);
    this.ws.send(data, { binary }, () => this.written(size));
  }

  private account(size: number, frames: number): void {
    this.backlogBytes += size;
    this.hooks.onBacklogChange?.(size, frames);
    if (this.backlogBytes > this.limits.hardLimitBytes) {
      this.onGiveUp?.('hard_limit');
      return;
    }
    if (this.backlogBytes > this.limits.highWaterBytes && !this.pausedFor.has('budget')) {
      this.pause('budget');
      this.stallTimer ??= setTimeout(() => this.judgeStall(), this.limits.stallTimeoutMs);
    }
  }

  private written(size: number): void {
    this.backlogBytes -= size;
    this.hooks.onBacklogChange?.(-size, -1);
    if (this.backlogBytes <= this.limits.lowWaterBytes) this.relieved();
  }

  /** The backlog drained: wake senders, handle held frames, read again. */
  private relieved(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    this.drained.notify();
    this.unpause('budget');
  }

  /**
   * The stall timer fired. After an event-loop stall, timers run before the I/O that
   * piled up meanwhile, and that I/O may be the very writes that drained this backlog:
   * judge only once it has been handled.
   */
  private judgeStall(): void {
    setImmediate(() => {
      this.stallTimer = undefined;
      if (this.open && this.backlogBytes > this.limits.highWaterBytes) this.onGiveUp?.('stall');
    });
  }
}
