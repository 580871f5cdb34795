import type { z } from 'zod';
import { ErrorCode } from './codes.js';
import { CLIENT_MESSAGE_SCHEMAS, type ClientMessage, type ClientMessageType } from './client-messages.js';

/** A frame the server could not accept, with a message that names the offending field. */
export interface ProtocolError {
  code: typeof ErrorCode.INVALID_MESSAGE;
  message: string;
  /** Dotted path of the offending field, when one field is to blame. */
  field?: string;
  /** The frame's `type`, when it had a known one. */
  messageType?: ClientMessageType;
}

export type ParseResult = { ok: true; message: ClientMessage } | { ok: false; error: ProtocolError };

export interface FrameInput {
  /** True when the WebSocket frame was binary: clients never send binary frames. */
  binary?: boolean;
}

function fail(message: string, extra: Partial<ProtocolError> = {}): ParseResult {
  return { ok: false, error: { code: ErrorCode.INVALID_MESSAGE, message, ...extra } };
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const missing = (issue as { input?: unknown }).input === undefined;
  switch (issue.code) {
    case 'invalid_type':
      return missing ? 'required' : `expected ${issue.expected}`;
    case 'invalid_value':
      if (missing) return 'required';
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
    case 'too_big':
    case 'custom':
    default:
      return issue.message;
  }
}

function isOwn(record: Record<string, unknown>, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(record, key);
}

/**
 * Parses one client frame. Never throws: every bad frame becomes a `ProtocolError`
 * whose message reads like `prompt: required` or `enabled: expected boolean`.
 */
export function parseClientMessage(data: string | Buffer, input: FrameInput = {}): ParseResult {
  if (input.binary) return fail('binary frames are not accepted from clients; send JSON text frames');
  const text = typeof data === 'string' ? data : data.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return fail(`invalid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return fail(`expected a JSON object, got ${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value}`);
  }
  const record = value as Record<string, unknown>;
  if (!isOwn(record, 'type')) return fail('type: required', { field: 'type' });
  const type = record.type;
  if (typeof type !== 'string') return fail('type: expected string', { field: 'type' });
  if (!isOwn(CLIENT_MESSAGE_SCHEMAS, type)) {
    return fail(`type: unknown message type ${JSON.stringify(type.slice(0, 64))}`, { field: 'type' });
  }
  const messageType = type as ClientMessageType;
  const result = CLIENT_MESSAGE_SCHEMAS[messageType].safeParse(record, { reportInput: true });
  if (result.success) return { ok: true, message: result.data as ClientMessage };
  const issue = result.error.issues[0];
  if (!issue) return fail('invalid message', { messageType });
  const field = issue.path.map(String).join('.');
  return fail(`${field || messageType}: ${describeIssue(issue)}`, { field: field || undefined, messageType });
}
