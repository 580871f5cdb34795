import { ErrorCode } from './codes.js';
import type { ContinuationState } from './client-messages.js';
import {
  ServerMessageSchema,
  type ServerMessage,
  type ServerMessageFields,
  type ServerMessageOf,
  type ServerMessageType,
} from './server-messages.js';

const SCHEMA_BY_TYPE = new Map(ServerMessageSchema.options.map((o) => [o.shape.type.value, o] as const));

/**
 * Drops `null` and `undefined` members (recursively) so the wire never carries them.
 * A continuation `payload` is the generator's opaque data and passes through untouched:
 * a snapshot must return exactly the state that was stored.
 */
function withoutEmpty(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutEmpty);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, member] of Object.entries(value)) {
      if (member === null || member === undefined) continue;
      out[key] = key === 'payload' ? member : withoutEmpty(member);
    }
    return out;
  }
  return value;
}

/**
 * Builds a server message of `type`, applying the protocol's defaults and checking it
 * against the schema, so a bug here fails loudly in tests instead of confusing a client.
 */
export function buildServerMessage<T extends ServerMessageType>(
  type: T,
  fields: ServerMessageFields<T>,
): ServerMessageOf<T> {
  const schema = SCHEMA_BY_TYPE.get(type);
  if (!schema) throw new Error(`unknown server message type ${type}`);
  return schema.parse(withoutEmpty({ ...fields, type })) as ServerMessageOf<T>;
}

/** The text frame for a server message. */
export function encodeServerMessage(message: ServerMessage): string {
  return JSON.stringify(withoutEmpty(message));
}

export function errorMessage(code: ErrorCode, message: string, retryable = false): ServerMessageOf<'error'> {
  return buildServerMessage('error', { code, message, retryable });
}

/** `continuation_state_snapshot` carries the state nested and, for FastVideo's contract document, flat. */
export function snapshotMessage(state: ContinuationState): ServerMessageOf<'continuation_state_snapshot'> {
  return buildServerMessage('continuation_state_snapshot', {
    state: { kind: state.kind, payload: state.payload },
    kind: state.kind,
    payload: state.payload,
  });
}

export { ErrorCode };
