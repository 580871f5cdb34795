export { WorkerPool, type WorkerSlot, type WorkerStatus } from './worker-pool.js';
export { InProcessWorker, type PoolWorker, type WorkerHealth } from './pool-worker.js';
export { SupervisedWorker, type SupervisorOptions } from './supervised-worker.js';
