import {
  ServerMessageSchema,
  type ServerMessage,
  type ServerMessageType,
} from '../protocol/server-messages.js';
import { ContinuationStateSchema, type ContinuationState } from '../protocol/client-messages.js';

const SCHEMAS = new Map<string, (typeof ServerMessageSchema.options)[number]>(
  ServerMessageSchema.options.map((o) => [o.shape.type.value, o] as const),
);

/** What one text frame from the server turned out to be. */
export type ReadServerFrame =
  | { kind: 'message'; message: ServerMessage }
  /** A type this client does not know: the contract says to ignore it. */
  | { kind: 'unknown'; type: string; raw: Record<string, unknown> }
  | { kind: 'invalid'; reason: string; type?: ServerMessageType };

/**
 * Reads a server text frame against the protocol schemas. Unknown types and unknown
 * fields are tolerated (newer servers may send more); a known type with a bad field is not.
 */
export function readServerFrame(text: string): ReadServerFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { kind: 'invalid', reason: `invalid JSON: ${(err as Error).message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { kind: 'invalid', reason: 'expected a JSON object' };
  }
  const raw = value as Record<string, unknown>;
  if (typeof raw.type !== 'string') return { kind: 'invalid', reason: 'type: expected string' };
  const schema = SCHEMAS.get(raw.type);
  if (!schema) return { kind: 'unknown', type: raw.type, raw };
  const type = raw.type as ServerMessageType;
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue?.path.map(String).join('.') || type;
    return { kind: 'invalid', type, reason: `${type}.${field}: ${issue?.message ?? 'invalid'}` };
  }
  return { kind: 'message', message: result.data as ServerMessage };
}

/**
 * Reads a saved continuation state: `{kind, payload}` as the player downloads it, or a
 * whole `continuation_state_snapshot` message (`{state: {kind, payload}}`). Throws a
 * TypeError naming what is wrong.
 */
export function parseContinuationState(value: unknown): ContinuationState {
  const candidate =
    value !== null && typeof value === 'object' && 'state' in value && !('kind' in value && 'payload' in value)
      ? (value as { state: unknown }).state
      : value;
  const result = ContinuationStateSchema.safeParse(candidate);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue?.path.map(String).join('.') || '(root)';
    throw new TypeError(`not a continuation state: ${field}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data;
}
