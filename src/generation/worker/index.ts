export {
  WorkerProcess,
  WorkerFailure,
  type WorkerFailureReason,
  type WorkerProcessOptions,
  type WorkerPhase,
} from './worker-process.js';
export { runWorker, type WorkerRuntimeOptions } from './worker-runtime.js';
export {
  WORKER_PROTOCOL,
  RecordKind,
  WorkerRecordReader,
  WorkerProtocolError,
  encodeRecord,
  encodeJobRequest,
  decodeJobRequest,
  type WorkerJobRequest,
  type WorkerMessage,
  type ControlMessage,
} from './protocol.js';
