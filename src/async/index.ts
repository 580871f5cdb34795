/**
 * The few async primitives livegen needs, in one place: waiting for a signal to fire,
 * waking whoever waits, a single-consumer queue with an optional byte budget, and
 * starting a worker thread from sources or compiled code alike. Media,
 * workers and the server use these instead of hand-rolled promise plumbing, so every
 * wait can be abandoned through an AbortSignal without leaving listeners behind.
 */
export { abortable, sleep } from './abortable.js';
export { Notifier } from './notifier.js';
export { AsyncQueue, type AsyncQueueOptions } from './async-queue.js';
export { startThread } from './thread.js';
