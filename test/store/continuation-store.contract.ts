import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ContinuationState } from '../../src/core/index.js';
import type { ContinuationStore } from '../../src/store/index.js';

/** A store under test and a way to move its time on. */
export interface ContinuationStoreFixture {
  store: ContinuationStore;
  /** Moves the store's clock `ms` forward: a manual clock for a memory store, a real wait for a server. */
  advance(ms: number): Promise<void>;
  /** Cleans up beyond `store.close()` (a connection, a server); optional. */
  dispose?(): Promise<void>;
}

const state = (n: number): ContinuationState => ({ kind: 'test', payload: { n } });

/**
 * What every ContinuationStore promises, run against each implementation. States are
 * compared by value, since a shared store hands back a deserialised copy. TTLs are a
 * second or so, so a store on real time passes the suite in a few seconds.
 */
export function continuationStoreContract(
  name: string,
  makeStore: () => ContinuationStoreFixture | Promise<ContinuationStoreFixture>,
): void {
  describe(`ContinuationStore contract: ${name}`, () => {
    let fixture: ContinuationStoreFixture;
    let store: ContinuationStore;

    beforeEach(async () => {
      fixture = await makeStore();
      store = fixture.store;
    });

    afterEach(async () => {
      await store.close();
      await fixture.dispose?.();
    });

    it('returns undefined for a key never put', async () => {
      expect(await store.get('missing')).toBeUndefined();
      expect(await store.size()).toBe(0);
    });

    it('returns the state put under a key', async () => {
      await store.put('s1', state(1));
      expect(await store.get('s1')).toEqual(state(1));
      expect(await store.size()).toBe(1);
    });

    it('returns a state as it was stored, nested values, strings and numbers intact', async () => {
      const stored: ContinuationState = {
        kind: 'synthetic/v1',
        payload: {
          frame: 120,
          phase: 0.125,
          negative: -3,
          prompt: 'a fox, 狐, 🦊 "quoted" \\ back',
          empty: '',
          flags: [true, false, null],
          nested: { list: [1, [2, 3], { deep: 'yes' }], none: null },
        },
      };
      await store.put('s1', stored);
      expect(await store.get('s1')).toEqual(stored);
    });

    it('replaces the state when a key is put again', async () => {
      await store.put('s1', state(1));
      await store.put('s1', state(2));
      expect(await store.get('s1')).toEqual(state(2));
      expect(await store.size()).toBe(1);
    });

    it('forgets a deleted key', async () => {
      await store.put('s1', state(1));
      await store.delete('s1');
      expect(await store.get('s1')).toBeUndefined();
      expect(await store.size()).toBe(0);
    });

    it('treats deleting an unknown key as done', async () => {
      await store.delete('missing');
      expect(await store.size()).toBe(0);
    });

    it('keeps keys apart, even keys that look alike or contain separators', async () => {
      const keys = ['a', 'A', 'a:b', 'a:', ':a', 'a*', 'a b', 'ключ', 'resume-token/0123456789abcdef'];
      for (const [i, key] of keys.entries()) await store.put(key, state(i));
      expect(await store.size()).toBe(keys.length);
      for (const [i, key] of keys.entries()) expect(await store.get(key)).toEqual(state(i));
      await store.delete('a');
      expect(await store.get('a')).toBeUndefined();
      expect(await store.get('a:b')).toEqual(state(2));
      expect(await store.size()).toBe(keys.length - 1);
    });

    it('keeps an entry with a TTL until the TTL has passed, then forgets it for get and size', async () => {
      await store.put('s1', state(1), { ttlMs: 1000 });
      await fixture.advance(400);
      expect(await store.get('s1')).toEqual(state(1));
      expect(await store.size()).toBe(1);
      await fixture.advance(800);
      expect(await store.size()).toBe(0);
      expect(await store.get('s1')).toBeUndefined();
    });

    it('expires only the entries whose TTL has passed', async () => {
      await store.put('short', state(1), { ttlMs: 500 });
      await store.put('long', state(2), { ttlMs: 60_000 });
      await store.put('forever', state(3));
      await fixture.advance(700);
      expect(await store.get('short')).toBeUndefined();
      expect(await store.get('long')).toEqual(state(2));
      expect(await store.get('forever')).toEqual(state(3));
      expect(await store.size()).toBe(2);
    });

    it('starts the TTL afresh when a key is put again', async () => {
      await store.put('s1', state(1), { ttlMs: 1000 });
      await fixture.advance(600);
      await store.put('s1', state(2), { ttlMs: 1000 });
      await fixture.advance(600);
      expect(await store.get('s1')).toEqual(state(2));
    });

    it('keeps an entry put again without a TTL', async () => {
      await store.put('s1', state(1), { ttlMs: 500 });
      await store.put('s1', state(2));
      await fixture.advance(700);
      expect(await store.get('s1')).toEqual(state(2));
    });

    it('accepts a new state under a key whose entry expired', async () => {
      await store.put('s1', state(1), { ttlMs: 500 });
      await fixture.advance(700);
      await store.put('s1', state(2));
      expect(await store.get('s1')).toEqual(state(2));
      expect(await store.size()).toBe(1);
    });

    it('refuses a TTL that is not a positive number, storing nothing', async () => {
      for (const ttlMs of [0, -1, Number.NaN, Infinity]) {
        await expect(store.put('s1', state(1), { ttlMs })).rejects.toThrow(RangeError);
      }
      expect(await store.get('s1')).toBeUndefined();
    });

    it('closes more than once without complaint', async () => {
      await store.put('s1', state(1), { ttlMs: 1000 });
      await store.close();
      await store.close();
    });
  });
}
