import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCode, CloseCode, protocolJsonSchema, protocolJsonSchemaText } from '../../src/protocol/index.js';
import { CLIENT_TYPES, SERVER_TYPES } from './helpers.js';

const SCHEMA_PATH = fileURLToPath(new URL('../../docs/protocol.schema.json', import.meta.url));

/** The `type` constants of every branch of a `oneOf` in the generated schema. */
function branchTypes(def: unknown): string[] {
  const branches = (def as { oneOf?: unknown[]; anyOf?: unknown[] }).oneOf ?? (def as { anyOf?: unknown[] }).anyOf ?? [];
  return branches.map((b) => {
    const type = (b as { properties?: { type?: { const?: unknown; enum?: unknown[] } } }).properties?.type;
    return String(type?.const ?? type?.enum?.[0]);
  });
}

describe('ErrorCode', () => {
  it('has exactly the 7 error codes of PROTOCOL.md', () => {
    expect(Object.values(ErrorCode).sort()).toEqual(
      [
        'session_rejected',
        'invalid_message',
        'preset_mismatch',
        'gpu_unavailable',
        'worker_failed',
        'upstream_timeout',
        'internal_error',
      ].sort(),
    );
  });
});

describe('CloseCode', () => {
  it('has exactly the close codes 1000, 1001, 1003, 1008, 1009, 1011 and 1013', () => {
    expect(Object.values(CloseCode).sort((a, b) => a - b)).toEqual([1000, 1001, 1003, 1008, 1009, 1011, 1013]);
  });
});

describe('JSON Schema document', () => {
  it('docs/protocol.schema.json is up to date with the zod schemas', () => {
    expect(existsSync(SCHEMA_PATH), 'docs/protocol.schema.json is missing: run `npm run schema`').toBe(true);
    const checkedIn = readFileSync(SCHEMA_PATH, 'utf8');
    expect(checkedIn, 'docs/protocol.schema.json is stale: run `npm run schema` and commit the result').toBe(
      protocolJsonSchemaText(),
    );
  });

  it('protocolJsonSchemaText() is the pretty-printed protocolJsonSchema() with a final newline', () => {
    const text = protocolJsonSchemaText();
    expect(text.endsWith('}\n')).toBe(true);
    expect(JSON.parse(text)).toEqual(protocolJsonSchema());
  });

  it('declares JSON Schema draft 2020-12', () => {
    expect(protocolJsonSchema().$schema).toBe('https://json-schema.org/draft/2020-12/schema');
  });

  it('describes all 8 client message types', () => {
    const defs = protocolJsonSchema().$defs as Record<string, unknown>;
    expect(branchTypes(defs.ClientMessage).sort()).toEqual([...CLIENT_TYPES].sort());
  });

  it('describes all 13 server message types', () => {
    const defs = protocolJsonSchema().$defs as Record<string, unknown>;
    expect(branchTypes(defs.ServerMessage).sort()).toEqual([...SERVER_TYPES].sort());
  });

  it('mentions every client and server type in the checked-in file', () => {
    const text = existsSync(SCHEMA_PATH) ? readFileSync(SCHEMA_PATH, 'utf8') : '';
    for (const type of [...CLIENT_TYPES, ...SERVER_TYPES]) expect(text).toContain(`"${type}"`);
  });
});
