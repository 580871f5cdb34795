import type { Logger } from 'pino';
import type { AudioFormat, ContinuationState } from '../generation/types.js';
import type { SegmentEncoder } from '../media/index.js';
import type { WorkerPool } from '../pool/index.js';
import type { SessionStreamMode } from '../session/index.js';
import type { SessionManager } from '../session/index.js';
import type { ContinuationStore } from '../store/index.js';
import type { AccessControl } from './access.js';
import type { Admission } from './admission.js';
import type { ServeConfig } from './config.js';
import type { ConnectionOptions } from './connection.js';
import type { ServerMetrics } from './metrics.js';
import type { PromptExtender } from './prompt-extender.js';
import type { SessionDriver } from './session-driver.js';

/** Everything a session driver needs from the server, composed once in `createLivegenServer`. */
export interface ServerContext {
  config: ServeConfig;
  manager: SessionManager;
  admission: Admission;
  pool: WorkerPool;
  store: ContinuationStore;
  extender: PromptExtender;
  logger: Logger;
  metrics: ServerMetrics;
  drivers: Map<string, SessionDriver>;
  connectionOptions: ConnectionOptions;
  access: AccessControl;
  /** Where per-session temp files (initial images) go. */
  tempDir: string;
  /** Why a client's continuation state cannot be resumed by these workers, or undefined. */
  checkContinuation(state: ContinuationState): string | undefined;
  createEncoder(mode: SessionStreamMode, audio: AudioFormat | null): SegmentEncoder;
}
