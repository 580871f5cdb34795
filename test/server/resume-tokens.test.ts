import { describe, expect, it } from 'vitest';
import { ResumeTokens } from '../../src/server/resume-tokens.js';
import { MemoryContinuationStore } from '../../src/store/index.js';
import { ManualClock } from '../store/manual-clock.js';

const state = (n: number, bytes = 100) => ({ kind: 'test', payload: { n, bytes } });

function tokens(maxBytes: number, ttlMs = 60_000) {
  const clock = new ManualClock();
  const store = new MemoryContinuationStore({ now: clock.now });
  const resumes = new ResumeTokens(store, { ttlMs, maxBytes, sizeOf: (s) => Number(s.payload.bytes), now: clock.now });
  return { clock, store, resumes };
}

describe('ResumeTokens', () => {
  it('issues unguessable tokens: 256 bits, base64url, never the same', () => {
    const { resumes } = tokens(1000);
    const seen = new Set(Array.from({ length: 1000 }, () => resumes.issue()));
    expect(seen.size).toBe(1000);
    for (const t of seen) expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('keeps at most maxBytes of states, dropping the least recently written first', async () => {
    const { resumes, store } = tokens(350);
    await resumes.save('a', undefined, state(1));
    await resumes.save('b', undefined, state(2));
    await resumes.save('c', undefined, state(3));
    // Writing a again makes it the most recent: b is now the oldest.
    await resumes.save('a', undefined, state(4));
    await resumes.save('d', undefined, state(5));
    expect(resumes.bytes).toBe(300);
    expect(await store.size()).toBe(3);
    expect(await resumes.claim('b', undefined)).toBeUndefined();
    expect((await resumes.claim('a', undefined))?.state).toEqual(state(4));
  });

  it('does not keep a state larger than the whole budget, nor its older version', async () => {
    const { resumes, store } = tokens(150);
    await resumes.save('a', undefined, state(1));
    await resumes.save('a', undefined, state(2, 500));
    expect(await store.size()).toBe(0);
    expect(resumes.bytes).toBe(0);
  });

  it('counts expired states out of the budget', async () => {
    const { resumes, clock } = tokens(250, 1000);
    await resumes.save('a', undefined, state(1));
    await resumes.save('b', undefined, state(2));
    clock.advance(1500);
    await resumes.save('c', undefined, state(3));
    expect(resumes.bytes).toBe(100);
  });

  it('binds a token to the API key, and lets one session claim it at a time', async () => {
    const { resumes } = tokens(1000);
    await resumes.save('t', 'key-1', state(1));
    expect(await resumes.claim('t', 'key-2')).toBeUndefined();
    expect(await resumes.claim('t', undefined)).toBeUndefined();
    const claim = await resumes.claim('t', 'key-1');
    expect(claim?.state).toEqual(state(1));
    expect(await resumes.claim('t', 'key-1')).toBeUndefined();
    claim?.abandon();
    const again = await resumes.claim('t', 'key-1');
    await again?.settle();
    expect(await resumes.claim('t', 'key-1')).toBeUndefined();
    expect(resumes.bytes).toBe(0);
  });
});
