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
  /**
   * Most JSON structure tokens (`,` `:` `[` `{`) the frame may hold. Counted on the raw
   * bytes before parsing, so a frame of millions of tiny values is refused in
   * microseconds instead of costing a parse and one validation issue per value.
   */
  maxTokens?: number;
  /** The only type accepted here (the opening frame); checked before the schema, so a wrong type costs no validation. */
  only?: ClientMessageType;
}

const TOKEN_BYTES = [0x2c, 0x3a, 0x5b, 0x7b]; // , : [ {
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * True when `data` holds more than `limit` JSON structure characters (`,` `:` `[` `{`)
 * outside strings: a bound on the values a parse would create. A native scan that counts
 * them inside strings too comes first; it over-counts, so a frame it finds within the
 * limit is within it, and only a frame that may be over it (or a prompt full of commas)
 * pays for the exact scan, which stops as soon as the limit is passed.
 */
export function exceedsJsonTokens(data: Buffer, limit: number): boolean {
  let rough = 0;
  for (const byte of TOKEN_BYTES) {
    let at = data.indexOf(byte);
    while (at !== -1 && rough <= limit) {
      rough += 1;
      at = data.indexOf(byte, at + 1);
    }
  }
  if (rough <= limit) return false;
  let count = 0;
  let inString = false;
  for (let i = 0; i < data.length; i++) {
    const byte = data[i] as number;
    if (inString) {
      if (byte === BACKSLASH) i += 1;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) {
      inString = true;
    } else if (byte === 0x2c || byte === 0x3a || byte === 0x5b || byte === 0x7b) {
      count += 1;
      if (count > limit) return true;
    }
  }
  return false;
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
  if (input.maxTokens !== undefined) {
    if (exceedsJsonTokens(typeof data === 'string' ? Buffer.from(data) : data, input.maxTokens)) {
      return fail(`frame holds more than ${input.maxTokens} JSON values`);
    }
  }
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
  if (input.only !== undefined && messageType !== input.only) return fail(`first frame must be ${input.only}, got ${messageType}`, { field: 'type', messageType });
  const result = CLIENT_MESSAGE_SCHEMAS[messageType].safeParse(record, { reportInput: true });
  if (result.success) return { ok: true, message: result.data as ClientMessage };
  const issue = result.error.issues[0];
  if (!issue) return fail('invalid message', { messageType });
  const field = issue.path.map(String).join('.');
  return fail(`${field || messageType}: ${describeIssue(issue)}`, { field: field || undefined, messageType });
}
