export { WorkerPool, type WorkerSlot, type WorkerStatus } from './worker-pool.js';
export { InProcessWorker, type PoolWorker, type WorkerHealth } from './pool-worker.js';
export { SupervisedWorker, type SupervisorOptions, type WorkerLogEntry } from './supervised-worker.js';
