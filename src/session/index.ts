// The session layer's public surface: exactly these runtime names (issue 2). The
// admission queue lives beside it in ./admission-queue.js for the server to compose.
export { SessionState, Session, InvalidSessionTransition, SessionRejected } from './session.js';
export { SessionManager } from './manager.js';
export type { Clock, SessionContinuationState, SessionStreamMode } from './session.js';
export type { SessionManagerOptions } from './manager.js';
