// The session layer's public surface: sessions and their states, the manager, and
// admission (the backend contract, its in-process implementation and its errors).
export { SessionState, Session, InvalidSessionTransition, SessionRejected } from './session.js';
export { SessionManager } from './manager.js';
export { LocalAdmission, QueueFull, AdmissionTimeout, AdmissionClosed } from './admission.js';
export type { Clock, SessionContinuationState, SessionStreamMode } from './session.js';
export type { SessionManagerOptions, SessionRegistry } from './manager.js';
export type {
  AdmissionBackend,
  AdmissionTicket,
  AdmitOptions,
  Placement,
  LocalAdmissionOptions,
} from './admission.js';
