export { MemoryContinuationStore, type ContinuationStore } from './continuation-store.js';
