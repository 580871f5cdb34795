import {
  GenerationPausedUpdatedSchema,
  AutoExtensionUpdatedSchema,
  EnhancementUpdatedSchema,
  LoopGenerationUpdatedSchema,
  SeedPromptsUpdatedSchema,
  SegmentPromptSourceSchema,
  SessionInitV2Schema,
  SnapshotStateSchema,
  type ContinuationState,
  type SegmentPromptSource,
} from '../protocol/client-messages.js';
import { CloseCode, ErrorCode } from '../protocol/codes.js';
import type {
  Ltx2StreamStart,
  MediaInit,
  QueueStatus,
  ServerMessage,
  ServerMessageOf,
  ServerMessageType,
} from '../protocol/server-messages.js';
import type { z } from 'zod';
import { TypedEmitter } from './emitter.js';
import { ClientErrorCode, LivegenError } from './errors.js';
import { readServerFrame } from './messages.js';
import {
  SocketState,
  globalWebSocket,
  streamUrl,
  type SocketCloseEvent,
  type WebSocketConstructor,
  type WebSocketLike,
} from './websocket.js';

/** Drops `type` and any index signature, keeping the named fields of a message input. */
type FieldsOf<T> = { [K in keyof T as K extends 'type' ? never : string extends K ? never : K]: T[K] };

/** Every `session_init_v2` field (defaults may be left out). */
export type SessionInitFields = FieldsOf<z.input<typeof SessionInitV2Schema>>;
/** `segment_prompt_source` fields besides the prompt. */
export type SegmentRequestOptions = Omit<FieldsOf<z.input<typeof SegmentPromptSourceSchema>>, 'prompt'>;

/** One binary frame of a segment's media, in arrival order: the init segment first, then fragments. */
export interface MediaChunk {
  segmentIdx: number;
  streamId: string;
  /** The segment's MIME type with codecs, from `media_init` (what `addSourceBuffer` takes). */
  mime: string;
  /** `init`: `ftyp`+`moov`; `fragment`: one or more whole `moof`+`mdat` pairs. */
  kind: 'init' | 'fragment';
  /** 0 for the init segment, then 1, 2, … for fragments. */
  index: number;
  data: Uint8Array;
}

export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
}

export interface UnknownServerMessage {
  type: string;
  raw: Record<string, unknown>;
}

type ServerMessageEvents = { [T in Exclude<ServerMessageType, 'error'>]: ServerMessageOf<T> };

/**
 * Events of a `LivegenClient`. Each server message type is an event of the same name
 * (`queue_status`, `step_complete`, …); server `error` frames and failures the client
 * detects both arrive as `error` with a `LivegenError`.
 */
export interface LivegenClientEvents extends ServerMessageEvents {
  open: undefined;
  /** Every valid server message, in order, before its own event. */
  message: ServerMessage;
  /** A segment's media, frame by frame, in order. */
  media: MediaChunk;
  error: LivegenError;
  /** A message type this client does not know (ignored by the contract; reported for logging). */
  unknown: UnknownServerMessage;
  close: CloseInfo;
}

export type ConnectionPhase = 'idle' | 'connecting' | 'open' | 'closed';
/** Where the session stands, as far as the client has seen. */
export type SessionPhase = 'none' | 'initialized' | 'queued' | 'active' | 'ended';

export interface LivegenClientOptions {
  /** The WebSocket implementation; default the global one (browsers, Node >= 22). In Node 20 pass `ws`. */
  WebSocket?: WebSocketConstructor;
  /** How long `snapshot()` waits for its answer (default 10 s). */
  snapshotTimeoutMs?: number;
  /** API key for a server with `auth.api_keys`, sent as `?token=` (browsers cannot set headers on a WebSocket). */
  token?: string;
}

interface PendingSnapshot {
  resolve(state: ContinuationState): void;
  reject(err: LivegenError): void;
  timer: ReturnType<typeof setTimeout>;
}

/** Close codes after which connecting again may succeed. */
const RETRYABLE_CLOSES = new Set<number>([CloseCode.GOING_AWAY, 1006, CloseCode.INTERNAL_ERROR, CloseCode.TRY_AGAIN_LATER]);

/**
 * A typed client for one livegen session (one WebSocket connection):
 *
 *   const client = await LivegenClient.connect('http://localhost:8000', { WebSocket });
 *   client.on('media', (chunk) => …);
 *   client.init({ curated_prompts: ['a fox'] });
 *   client.requestSegment('a fox runs through snow');
 *
 * Server messages are checked against the protocol schemas; unknown types and fields
 * are tolerated. To resume, connect again with `LivegenClient.resume(url, lastSnapshot)`.
 */
export class LivegenClient extends TypedEmitter<LivegenClientEvents> {
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly snapshotTimeoutMs: number;
  private readonly token: string | undefined;
  private socket: WebSocketLike | undefined;
  private phaseNow: ConnectionPhase = 'idle';
  private sessionNow: SessionPhase = 'none';
  private media: { init: MediaInit; next: number } | undefined;
  private readonly pendingSnapshots: PendingSnapshot[] = [];
  private resolveClosed!: (info: CloseInfo) => void;
  private closeInfoNow: CloseInfo | undefined;

  /** Resolves once the connection has closed, for any reason. */
  readonly closed: Promise<CloseInfo>;
  /** The latest `queue_status`. */
  queue: QueueStatus | undefined;
  /** Size, frame rate and frame count of the stream, from `ltx2_stream_start`. */
  stream: Ltx2StreamStart | undefined;
  /** The latest continuation state received (from `snapshot()` or any snapshot message). */
  lastSnapshot: ContinuationState | undefined;
  /** Segments whose `ltx2_segment_complete` has arrived. */
  segmentsCompleted = 0;

  constructor(options: LivegenClientOptions = {}) {
    super();
    const impl = options.WebSocket ?? globalWebSocket();
    if (!impl) {
      throw new LivegenError(
        ClientErrorCode.INVALID_REQUEST,
        'no WebSocket implementation: this runtime has no global WebSocket (Node < 22); pass { WebSocket } from the `ws` package',
      );
    }
    this.WebSocketImpl = impl;
    this.snapshotTimeoutMs = options.snapshotTimeoutMs ?? 10_000;
    this.token = options.token;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Creates a client and connects it. */
  static async connect(url: string, options: LivegenClientOptions = {}): Promise<LivegenClient> {
    const client = new LivegenClient(options);
    await client.connect(url);
    return client;
  }

  /**
   * Starts a new session that continues from `lastSnapshot` (a state from `snapshot()` or
   * a saved file): connects and sends `session_init_v2` with it as `continuation_state`.
   * Listeners attached as soon as it resolves miss nothing: the server's answers to the
   * init arrive on later turns of the event loop.
   */
  static async resume(
    url: string,
    lastSnapshot: ContinuationState,
    init: Omit<SessionInitFields, 'continuation_state'> = {},
    options: LivegenClientOptions = {},
  ): Promise<LivegenClient> {
    const client = await LivegenClient.connect(url, options);
    client.init({ ...init, continuation_state: lastSnapshot });
    return client;
  }

  get phase(): ConnectionPhase {
    return this.phaseNow;
  }

  get session(): SessionPhase {
    return this.sessionNow;
  }

  get closeInfo(): CloseInfo | undefined {
    return this.closeInfoNow;
  }

  /**
   * Opens the socket to a server (`http://host:port`, or the `ws://…/v1/stream` URL).
   * Rejects with `connection_failed` when the socket closes before it opens.
   */
  connect(url: string): Promise<void> {
    if (this.phaseNow !== 'idle') {
      return Promise.reject(new LivegenError(ClientErrorCode.INVALID_REQUEST, 'connect() was already called: use a new client per connection'));
    }
    this.phaseNow = 'connecting';
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocketImpl(streamUrl(url, this.token));
    } catch (err) {
      this.phaseNow = 'closed';
      return Promise.reject(new LivegenError(ClientErrorCode.CONNECTION_FAILED, `cannot open ${url}: ${String(err)}`, { cause: err }));
    }
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    return new Promise<void>((resolve, reject) => {
      socket.onopen = () => {
        this.phaseNow = 'open';
        this.emit('open', undefined);
        resolve();
      };
      socket.onerror = () => {
        // The close event follows with the code; an error after opening is reported here.
        if (this.phaseNow === 'open') {
          this.report(new LivegenError(ClientErrorCode.CONNECTION_FAILED, 'socket error', { retryable: true }));
        }
      };
      socket.onclose = (event: SocketCloseEvent) => {
        const wasOpen = this.phaseNow === 'open';
        this.onClose(event);
        if (!wasOpen) {
          reject(
            new LivegenError(
              ClientErrorCode.CONNECTION_FAILED,
              // A refused upgrade (401/403 without a valid API key, 429, 503) reaches a browser only as close 1006.
              `cannot connect to ${url} (close ${event.code}${event.reason ? `: ${event.reason}` : ''}): server down, or the upgrade was refused (API key, origin, rate limit)`,
              { retryable: true },
            ),
          );
        }
      };
      socket.onmessage = (event) => this.onFrame(event.data);
    });
  }

  /** Sends `session_init_v2`; must be the first message, sent once. */
  init(fields: SessionInitFields = {}): void {
    if (this.sessionNow !== 'none') throw new LivegenError(ClientErrorCode.INVALID_REQUEST, 'init() was already sent on this connection');
    this.sendChecked(SessionInitV2Schema, { ...fields, type: 'session_init_v2' });
    this.sessionNow = 'initialized';
  }

  /** Asks for one segment (`segment_prompt_source`); it runs after those already asked for. */
  requestSegment(prompt: string, options: SegmentRequestOptions = {}): void {
    this.requireInit();
    const message: z.input<typeof SegmentPromptSourceSchema> = { ...options, prompt, type: 'segment_prompt_source' };
    this.sendChecked<SegmentPromptSource>(SegmentPromptSourceSchema, message);
  }

  /** Replaces the session's curated prompts (used by loop generation). */
  setSeedPrompts(prompts: string[]): void {
    this.requireInit();
    this.sendChecked(SeedPromptsUpdatedSchema, { type: 'seed_prompts_updated', seed_prompts: prompts });
  }

  setEnhancement(enabled: boolean): void {
    this.requireInit();
    this.sendChecked(EnhancementUpdatedSchema, { type: 'enhancement_updated', enabled });
  }

  /** When on, the server continues with a derived prompt whenever no request waits. */
  setAutoExtension(enabled: boolean): void {
    this.requireInit();
    this.sendChecked(AutoExtensionUpdatedSchema, { type: 'auto_extension_updated', enabled });
  }

  /** When on, the server cycles through the curated prompts on its own. */
  setLoopGeneration(enabled: boolean): void {
    this.requireInit();
    this.sendChecked(LoopGenerationUpdatedSchema, { type: 'loop_generation_updated', enabled });
  }

  /** Paused: segment requests wait until generation resumes (a running segment finishes). */
  setPaused(paused: boolean): void {
    this.requireInit();
    this.sendChecked(GenerationPausedUpdatedSchema, { type: 'generation_paused_updated', paused });
  }

  /**
   * The session's current continuation state. Rejects with the server's `internal_error`
   * when there is none yet (no segment finished), on close, or after the timeout.
   */
  snapshot(): Promise<ContinuationState> {
    try {
      this.requireInit();
      this.requireOpen();
    } catch (err) {
      return Promise.reject(err as LivegenError);
    }
    return new Promise<ContinuationState>((resolve, reject) => {
      const pending: PendingSnapshot = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.dropSnapshot(pending);
          reject(new LivegenError(ClientErrorCode.TIMEOUT, `no continuation_state_snapshot within ${this.snapshotTimeoutMs} ms`, { retryable: true }));
        }, this.snapshotTimeoutMs),
      };
      this.pendingSnapshots.push(pending);
      this.sendChecked(SnapshotStateSchema, { type: 'snapshot_state' });
    });
  }

  /**
   * Resolves with the next `event` (that passes `filter`). Rejects if the connection
   * closes first (unless waiting for `close`) or after `timeoutMs`.
   */
  next<K extends keyof LivegenClientEvents>(
    event: K,
    options: { filter?: (value: LivegenClientEvents[K]) => boolean; timeoutMs?: number } = {},
  ): Promise<LivegenClientEvents[K]> {
    if (event === 'close' && this.closeInfoNow) return Promise.resolve(this.closeInfoNow as LivegenClientEvents[K]);
    if (this.phaseNow === 'closed') return Promise.reject(this.closedError(`waiting for ${String(event)}`));
    return new Promise((resolve, reject) => {
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              cleanup();
              reject(new LivegenError(ClientErrorCode.TIMEOUT, `no ${String(event)} within ${options.timeoutMs} ms`));
            }, options.timeoutMs);
      const offEvent = this.on(event, (value) => {
        if (options.filter && !options.filter(value)) return;
        cleanup();
        resolve(value);
      });
      const offClose =
        event === 'close'
          ? () => undefined
          : this.on('close', () => {
              cleanup();
              reject(this.closedError(`waiting for ${String(event)}`));
            });
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        offEvent();
        offClose();
      };
    });
  }

  /** Ends the session: closes the socket (1000) and resolves once it is closed. */
  leave(code: number = CloseCode.NORMAL, reason = 'client left'): Promise<CloseInfo> {
    const socket = this.socket;
    if (socket && (socket.readyState === SocketState.OPEN || socket.readyState === SocketState.CONNECTING)) {
      socket.close(code, reason);
    }
    return this.phaseNow === 'idle' ? Promise.resolve({ code, reason, wasClean: true }) : this.closed;
  }

  /**
   * Sends a text frame as it is, unchecked: for tools and tests that need to send what the
   * protocol refuses.
   */
  sendRaw(text: string): void {
    this.requireOpen().send(text);
  }

  // ------------------------------------------------------------------ inside

  private requireOpen(): WebSocketLike {
    const socket = this.socket;
    if (!socket || this.phaseNow !== 'open' || socket.readyState !== SocketState.OPEN) {
      throw new LivegenError(ClientErrorCode.NOT_OPEN, `the connection is ${this.phaseNow}${this.closeInfoNow ? ` (close ${this.closeInfoNow.code})` : ''}`);
    }
    return socket;
  }

  private requireInit(): void {
    if (this.sessionNow === 'none') {
      throw new LivegenError(ClientErrorCode.INVALID_REQUEST, 'send init() first: the first frame must be session_init_v2');
    }
  }

  /** Checks a message against its schema before sending, so a mistake fails here, not as a close. */
  private sendChecked<T>(schema: z.ZodType<T>, message: unknown): void {
    const socket = this.requireOpen();
    const result = schema.safeParse(message);
    if (!result.success) {
      const issue = result.error.issues[0];
      const field = issue?.path.map(String).join('.') || '(message)';
      throw new LivegenError(ClientErrorCode.INVALID_REQUEST, `${field}: ${issue?.message ?? 'invalid'}`);
    }
    socket.send(JSON.stringify(result.data));
  }

  private onFrame(data: unknown): void {
    if (typeof data === 'string') {
      this.onText(data);
      return;
    }
    const bytes = toBytes(data);
    if (!bytes) {
      this.report(new LivegenError(ClientErrorCode.INVALID_SERVER_MESSAGE, `unreadable frame data (${typeof data}); binaryType must be arraybuffer`));
      return;
    }
    const media = this.media;
    if (!media) {
      this.report(new LivegenError(ClientErrorCode.UNEXPECTED_BINARY, `binary frame of ${bytes.byteLength} bytes outside a segment (no media_init before it)`));
      return;
    }
    const index = media.next++;
    this.emit('media', {
      segmentIdx: media.init.segment_idx,
      streamId: media.init.stream_id,
      mime: media.init.mime,
      kind: index === 0 ? 'init' : 'fragment',
      index,
      data: bytes,
    });
  }

  private onText(text: string): void {
    const read = readServerFrame(text);
    if (read.kind === 'unknown') {
      this.emit('unknown', { type: read.type, raw: read.raw });
      return;
    }
    if (read.kind === 'invalid') {
      this.report(new LivegenError(ClientErrorCode.INVALID_SERVER_MESSAGE, `server sent an invalid frame: ${read.reason}`));
      return;
    }
    const message = read.message;
    this.track(message);
    this.emit('message', message);
    if (message.type === 'error') {
      const error = new LivegenError(message.code, message.message, { retryable: message.retryable, source: 'server', reason: message.reason, prompt: message.prompt });
      // The server answers a snapshot with no state with internal_error (no correlation id).
      if (message.code === ErrorCode.INTERNAL_ERROR) this.settleSnapshot((p) => p.reject(error));
      this.report(error);
      return;
    }
    this.emit(message.type, message as never);
  }

  /** Keeps the client's view of the session current; runs before listeners see the message. */
  private track(message: ServerMessage): void {
    switch (message.type) {
      case 'queue_status':
        this.queue = message;
        if (this.sessionNow === 'initialized' || this.sessionNow === 'queued') {
          this.sessionNow = message.queue_depth > 0 ? 'queued' : this.sessionNow;
        }
        break;
      case 'gpu_assigned':
        this.sessionNow = 'active';
        break;
      case 'ltx2_stream_start':
        this.sessionNow = 'active';
        this.stream = message;
        break;
      case 'media_init':
        this.media = { init: message, next: 0 };
        break;
      case 'media_segment_complete':
        this.media = undefined;
        break;
      case 'ltx2_segment_complete':
        this.segmentsCompleted += 1;
        break;
      case 'continuation_state_snapshot':
        this.lastSnapshot = message.state;
        this.settleSnapshot((p) => p.resolve(message.state));
        break;
      default:
        break;
    }
  }

  private settleSnapshot(settle: (pending: PendingSnapshot) => void): void {
    const pending = this.pendingSnapshots.shift();
    if (!pending) return;
    clearTimeout(pending.timer);
    settle(pending);
  }

  private dropSnapshot(pending: PendingSnapshot): void {
    const at = this.pendingSnapshots.indexOf(pending);
    if (at >= 0) this.pendingSnapshots.splice(at, 1);
  }

  private onClose(event: SocketCloseEvent): void {
    if (this.phaseNow === 'closed' && this.closeInfoNow) return;
    const info: CloseInfo = { code: event.code, reason: event.reason, wasClean: event.wasClean };
    this.phaseNow = 'closed';
    this.sessionNow = this.sessionNow === 'none' ? 'none' : 'ended';
    this.closeInfoNow = info;
    this.media = undefined;
    for (const pending of this.pendingSnapshots.splice(0)) {
      clearTimeout(pending.timer);
      pending.reject(this.closedError('waiting for continuation_state_snapshot'));
    }
    this.resolveClosed(info);
    this.emit('close', info);
  }

  private closedError(what: string): LivegenError {
    const info = this.closeInfoNow;
    const detail = info ? ` (close ${info.code}${info.reason ? `: ${info.reason}` : ''})` : '';
    return new LivegenError(ClientErrorCode.CONNECTION_CLOSED, `connection closed ${what}${detail}`, {
      retryable: info ? RETRYABLE_CLOSES.has(info.code) : false,
    });
  }

  /** An error nobody listens for is still written to the console, never dropped silently. */
  private report(error: LivegenError): void {
    if (this.listenerCount('error') === 0) console.warn(`livegen: ${error.code}: ${error.message}`);
    this.emit('error', error);
  }
}

function toBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}

