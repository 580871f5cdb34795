export { WorkerPool, type WorkerSlot, type WorkerStatus } from './worker-pool.js';
