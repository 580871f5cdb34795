/**
 * A scripted client of the Dreamverse dialect at `/ws` (docs/dreamverse.md): it records
 * every frame in arrival order, JSON and binary, with its arrival time, and reads the log
 * back as streams and segments so tests can check order, fields and media.
 */
import WebSocket from 'ws';

/** A server → client JSON frame: a `type` and whatever fields the dialect gives it. */
export type DvMessage = { type: string } & Record<string, unknown>;

export type DvFrame =
  | { kind: 'json'; seq: number; at: number; message: DvMessage }
  | { kind: 'binary'; seq: number; at: number; data: Buffer };

/** One segment as the log shows it: its JSON frames (in order) and its media. */
export interface DvSegment {
  /** 0-based index of the stream (`ltx2_stream_start`) it belongs to; -1 before any. */
  stream: number;
  segmentIdx: number;
  /** The types of its JSON frames, in order, with `binary` once for its media run. */
  order: string[];
  messages: Record<string, DvMessage>;
  streamId: string | undefined;
  media: Buffer[];
}

/** One stream: its `ltx2_stream_start`, what followed it, and its `ltx2_stream_complete` (if any yet). */
export interface DvStream {
  start: DvMessage;
  startSeq: number;
  complete: DvMessage | undefined;
  segments: DvSegment[];
}

export const DEFAULT_WAIT_MS = 20_000;

/** The Dreamverse dialect's URL for a server's base URL. */
export function dvUrl(baseUrl: string): string {
  return `${baseUrl.replace(/^http/, 'ws')}/ws`;
}

export class DvClient {
  readonly frames: DvFrame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  closeInfo: { code: number; reason: string } | undefined;
  /** Frames whose text was not JSON (a dialect violation; tests check it stays empty). */
  readonly unparsable: string[] = [];
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const at = performance.now();
      const seq = this.frames.length;
      if (isBinary) {
        this.frames.push({ kind: 'binary', seq, at, data: Buffer.from(data) });
      } else {
        const text = data.toString('utf8');
        try {
          this.frames.push({ kind: 'json', seq, at, message: JSON.parse(text) as DvMessage });
        } catch {
          this.unparsable.push(text);
        }
      }
      this.notify();
    });
    // Errors after the handshake end in 'close'; without a listener they would throw.
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
        this.notify();
      });
    });
  }

  /** Opens the socket; sends nothing. */
  static connect(url: string): Promise<DvClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      const client = new DvClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  /** Opens the socket and sends a `session_init_v2` with `fields`. */
  static async start(url: string, fields: Record<string, unknown> = {}): Promise<DvClient> {
    const client = await DvClient.connect(url);
    client.send({ type: 'session_init_v2', ...fields });
    return client;
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(message: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message));
  }

  /** The JSON frames, in order. */
  get messages(): DvMessage[] {
    return this.frames.flatMap((f) => (f.kind === 'json' ? [f.message] : []));
  }

  /** The types of all frames in order (`binary` for media), for failure messages. */
  summary(from = 0): string {
    return this.frames
      .slice(from)
      .map((f) => (f.kind === 'json' ? f.message.type : 'binary'))
      .filter((t, i, all) => t !== 'binary' || all[i - 1] !== 'binary')
      .join(',');
  }

  ofType(type: string): DvMessage[] {
    return this.messages.filter((m) => m.type === type);
  }

  /** JSON frames of `type` (with their position in the log). */
  framesOfType(type: string): Extract<DvFrame, { kind: 'json' }>[] {
    return this.frames.filter((f): f is Extract<DvFrame, { kind: 'json' }> => f.kind === 'json' && f.message.type === type);
  }

  /** The first JSON frame at or after `fromSeq` that matches. */
  find(predicate: (m: DvMessage) => boolean, fromSeq = 0): Extract<DvFrame, { kind: 'json' }> | undefined {
    for (let i = fromSeq; i < this.frames.length; i++) {
      const f = this.frames[i] as DvFrame;
      if (f.kind === 'json' && predicate(f.message)) return f;
    }
    return undefined;
  }

  /** Position in the log of the first JSON frame of `type` at or after `fromSeq`; -1 when none. */
  seqOf(type: string, fromSeq = 0): number {
    return this.find((m) => m.type === type, fromSeq)?.seq ?? -1;
  }

  /** Waits until `count` frames of `type` have arrived; returns the `count`-th. */
  async waitFor(type: string, count = 1, timeoutMs = DEFAULT_WAIT_MS): Promise<DvMessage> {
    await this.until(() => this.ofType(type).length >= count, `${count} x ${type}`, timeoutMs);
    return this.ofType(type)[count - 1] as DvMessage;
  }

  /** Waits for a JSON frame at or after `fromSeq` that matches; returns it with its position. */
  async waitForMatch(predicate: (m: DvMessage) => boolean, what: string, fromSeq = 0, timeoutMs = DEFAULT_WAIT_MS): Promise<Extract<DvFrame, { kind: 'json' }>> {
    await this.until(() => this.find(predicate, fromSeq) !== undefined, what, timeoutMs);
    return this.find(predicate, fromSeq) as Extract<DvFrame, { kind: 'json' }>;
  }

  /** Waits until `predicate` holds; fails when the connection closes first or the time is up. */
  async until(predicate: () => boolean, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (this.closeInfo) throw new Error(`connection closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for ${what}; got ${this.summary()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.summary()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for the close; fails when it does not come in time. */
  async waitForClose(timeoutMs = DEFAULT_WAIT_MS): Promise<{ code: number; reason: string }> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.closed,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no close within ${timeoutMs} ms; got ${this.summary()}`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The binary frames between the `media_init` of `streamId` and its `media_segment_complete`. */
  mediaFrames(streamId: string): Buffer[] {
    const out: Buffer[] = [];
    let inside = false;
    for (const f of this.frames) {
      if (f.kind === 'json') {
        if (f.message.type === 'media_init' && f.message.stream_id === streamId) inside = true;
        else if (inside && (f.message.type === 'media_init' || (f.message.type === 'media_segment_complete' && f.message.stream_id === streamId))) inside = false;
      } else if (inside) {
        out.push(f.data);
      }
    }
    return out;
  }

  /** A segment's media as one buffer (its fMP4). */
  mediaOf(streamId: string): Buffer {
    return Buffer.concat(this.mediaFrames(streamId));
  }

  /** Binary frames that arrived outside every `media_init` … `media_segment_complete` window. */
  strayBinaries(): number[] {
    const stray: number[] = [];
    let open: unknown;
    for (const f of this.frames) {
      if (f.kind === 'json') {
        if (f.message.type === 'media_init') open = f.message.stream_id;
        else if (f.message.type === 'media_segment_complete' && f.message.stream_id === open) open = undefined;
      } else if (open === undefined) {
        stray.push(f.seq);
      }
    }
    return stray;
  }

  /** The log read as streams, each with its segments. */
  streams(): DvStream[] {
    const streams: DvStream[] = [];
    let current: DvStream | undefined;
    let mediaOwner: DvSegment | undefined;
    const segmentOf = (idx: unknown): DvSegment | undefined => {
      if (typeof idx !== 'number' || !current) return undefined;
      let segment = current.segments.find((s) => s.segmentIdx === idx);
      if (!segment) {
        segment = { stream: streams.length - 1, segmentIdx: idx, order: [], messages: {}, streamId: undefined, media: [] };
        current.segments.push(segment);
      }
      return segment;
    };
    for (const f of this.frames) {
      if (f.kind === 'binary') {
        if (mediaOwner) {
          if (mediaOwner.order.at(-1) !== 'binary') mediaOwner.order.push('binary');
          mediaOwner.media.push(f.data);
        }
        continue;
      }
      const m = f.message;
      if (m.type === 'ltx2_stream_start') {
        current = { start: m, startSeq: f.seq, complete: undefined, segments: [] };
        streams.push(current);
        mediaOwner = undefined;
        continue;
      }
      if (m.type === 'ltx2_stream_complete') {
        if (current) current.complete = m;
        continue;
      }
      if (!SEGMENT_TYPES.has(m.type)) continue;
      const segment = segmentOf(m.segment_idx);
      if (!segment) continue;
      segment.order.push(m.type);
      segment.messages[m.type] = m;
      if (m.type === 'media_init') {
        segment.streamId = typeof m.stream_id === 'string' ? m.stream_id : String(m.stream_id);
        mediaOwner = segment;
      } else if (m.type === 'media_segment_complete') {
        mediaOwner = undefined;
      }
    }
    return streams;
  }

  /** Every segment of every stream, in order. */
  segments(): DvSegment[] {
    return this.streams().flatMap((s) => s.segments);
  }

  /** Segments that got as far as `ltx2_segment_complete`. */
  completedSegments(): DvSegment[] {
    return this.segments().filter((s) => s.messages.ltx2_segment_complete !== undefined);
  }

  /** Sends `leave`. */
  leave(): void {
    this.send({ type: 'leave' });
  }

  close(code?: number): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code);
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** The frames the dialect sends per segment, each carrying `segment_idx`. */
export const SEGMENT_ORDER = [
  'segment_prompt_source',
  'ltx2_segment_start',
  'media_init',
  'binary',
  'media_segment_complete',
  'step_complete',
  'ltx2_segment_complete',
] as const;

const SEGMENT_TYPES = new Set<string>(SEGMENT_ORDER.filter((t) => t !== 'binary'));
