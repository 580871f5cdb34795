import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeServerMessage, snapshotMessage } from '../../src/protocol/index.js';
import { encodedSnapshot } from '../../src/server/snapshots.js';

describe('encodedSnapshot', () => {
  it('says what the protocol builder says, for any state', () => {
    // The builder's schema drops a "__proto__" key; the snapshot passes the stored payload
    // through exactly (states from clients never hold one: their schema dropped it on the way in).
    const key = fc.string().filter((k) => k !== '__proto__');
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.dictionary(key, fc.jsonValue({ maxDepth: 4 })), (kind, payload) => {
        const state = { kind, payload };
        expect(JSON.parse(encodedSnapshot(state).toString('utf8'))).toEqual(JSON.parse(encodeServerMessage(snapshotMessage(state))));
      }),
      { numRuns: 200 },
    );
  });

  it('encodes a state once, however often it is asked for', () => {
    const state = { kind: 'k', payload: { big: 'x'.repeat(1000) } };
    expect(encodedSnapshot(state)).toBe(encodedSnapshot(state));
  });
});
