import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { exceedsJsonTokens, parseClientMessage } from '../../src/protocol/index.js';

/** The exact count by a plain walk over the parsed value: one token per member and element separator, per container. */
function tokensOf(value: unknown): number {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) {
      count += 1 + Math.max(0, node.length - 1);
      stack.push(...node);
    } else if (node !== null && typeof node === 'object') {
      const values = Object.values(node);
      count += 1 + values.length + Math.max(0, values.length - 1);
      stack.push(...values);
    }
  }
  return count;
}

describe('exceedsJsonTokens', () => {
  it('agrees with the structure of any JSON value, whatever its strings contain, at any limit', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.nat(200), (value, limit) => {
        const text = Buffer.from(JSON.stringify(value));
        expect(exceedsJsonTokens(text, limit)).toBe(tokensOf(value) > limit);
      }),
      { numRuns: 500 },
    );
  });

  it('does not count commas and colons inside a string, even when they are many', () => {
    const prompt = 'a, b: c, '.repeat(50_000);
    const frame = Buffer.from(JSON.stringify({ type: 'segment_prompt_source', prompt }));
    // { "type" : ... , "prompt" : ... } holds four.
    expect(exceedsJsonTokens(frame, 4)).toBe(false);
    expect(exceedsJsonTokens(frame, 3)).toBe(true);
  });

  it('decides a million-value array without scanning all of it', () => {
    const frame = Buffer.from(`[${'1,'.repeat(1_000_000)}1]`);
    expect(exceedsJsonTokens(frame, 1000)).toBe(true);
  });

  it('sees escaped quotes as part of the string', () => {
    const frame = Buffer.from('{"a":"x\\",y:[{"}');
    expect(exceedsJsonTokens(frame, 2)).toBe(false);
    expect(exceedsJsonTokens(frame, 1)).toBe(true);
  });
});

describe('parseClientMessage limits', () => {
  it('refuses a frame of more JSON values than allowed before parsing it, naming the limit', () => {
    const frame = Buffer.from(`{"type":"seed_prompts_updated","seed_prompts":[${'"p",'.repeat(20_000)}"p"]}`);
    const parsed = parseClientMessage(frame, { maxTokens: 10_000 });
    expect(parsed).toEqual({ ok: false, error: { code: 'invalid_message', message: 'frame holds more than 10000 JSON values' } });
  });

  it('accepts a frame within the limit', () => {
    const frame = Buffer.from(JSON.stringify({ type: 'seed_prompts_updated', seed_prompts: ['a', 'b'] }));
    expect(parseClientMessage(frame, { maxTokens: 10 }).ok).toBe(true);
  });

  it('checks the type of an opening frame before validating anything else', () => {
    // Invalid as a seed_prompts_updated too, but the type alone decides the answer.
    const frame = Buffer.from(JSON.stringify({ type: 'seed_prompts_updated', seed_prompts: [1, 2, 3] }));
    const parsed = parseClientMessage(frame, { only: 'session_init_v2' });
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error.message).toBe('first frame must be session_init_v2, got seed_prompts_updated');
  });
});
