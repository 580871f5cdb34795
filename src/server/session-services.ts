/**
 * What a session needs from the server (its ports), and what the server can ask of a
 * running session (its handle). Composed once in `createLivegenServer`; the driver reads
 * no raw config and reaches no other session.
 */
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { ContinuationState } from '../core/index.js';
import type { AudioFormat } from '../generation/types.js';
import type { SegmentEncoder } from '../media/index.js';
import type { WorkerSlot } from '../pool/index.js';
import type { AdmissionBackend, Session, SessionRegistry, SessionState } from '../session/index.js';
import type { ContinuationStore } from '../store/index.js';
import type { ConnectionHooks, ConnectionLimits } from './connection.js';
import type { TempFiles } from './init-image.js';
import type { ServerMetrics } from './metrics.js';
import type { OpeningFrameParser } from './opening-frame.js';
import type { SessionPolicy } from './policy.js';
import type { PromptExtender, PromptLayer } from '../prompts/index.js';
import type { PromptPreparation } from './segment-scheduler.js';
import type { ResumeTokens } from './resume-tokens.js';
import type { SessionEventLog } from './session-log.js';

/** What the server asks of a running session: the reaper, shutdown and inspection. */
export interface SessionHandle {
  /** The session idled past its timeout (or its init deadline). */
  timeOut(): void;
  /** Server shutdown: a running segment may finish within `graceMs`, then the session ends. */
  shutdown(graceMs: number): Promise<void>;
  view(): SessionView;
}

/** What a session needs from the server, composed once in `createLivegenServer`. */
export interface SessionServices {
  policy: SessionPolicy;
  registry: SessionRegistry<SessionHandle>;
  admission: AdmissionBackend<WorkerSlot>;
  store: ContinuationStore;
  /** States kept behind `gpu_assigned.resume_token`, for a later session to continue from. */
  resumes: ResumeTokens;
  extender: PromptExtender;
  /** The prompt layer: safety checks and enhancement (the scheduler's part), rewrite and status (the /ws dialect). */
  prompts: PromptPreparation & Pick<PromptLayer, 'rewrite' | 'status'>;
  /** Worker slots in the pool, and those free now (the /ws dialect's queue_status). */
  workersTotal(): number;
  workersAvailable(): number;
  openingFrames: OpeningFrameParser;
  tempFiles: TempFiles;
  metrics: ServerMetrics;
  logger: Logger;
  connection: { limits: ConnectionLimits; hooks: ConnectionHooks };
  /** Starts a segment encoder for a stream mode (ffmpeg takes tens of ms to start). */
  createEncoder(mode: Session['streamMode'], audio: AudioFormat | null): SegmentEncoder;
  /** Why the workers cannot resume from a client's state, or undefined when they can. */
  checkContinuation(state: ContinuationState): string | undefined;
  /** Opens the session's JSONL event log, when session logs are on. */
  openEventLog(session: Session): SessionEventLog | undefined;
  /** The session's API key stops counting against its concurrent-session limit. */
  releaseKey(keyId: string | undefined): void;
  /** Told when the opening frame has arrived (or the connection is gone), for the init byte budget. */
  initReceived(ws: WebSocket): void;
}

/** What operations and tests can see of a running session. */
export interface SessionView {
  id: string;
  state: SessionState;
  clientId: string | undefined;
  streamMode: Session['streamMode'];
  segmentIdx: number;
  generationPaused: boolean;
  loopGenerationEnabled: boolean;
  autoExtensionEnabled: boolean;
  singleClipMode: boolean;
  enhancementEnabled: boolean;
  curatedPrompts: string[];
  /** Unknown init fields, kept. */
  metadata: Record<string, unknown>;
  gpuId: number | undefined;
  sendBacklogBytes: number;
  encoderPid: number | undefined;
}

