import { afterEach, describe, expect, it } from 'vitest';
import { LlmChainError, LlmError, OpenAiCompatibleProvider, ProviderSet, promptFromReply, type LlmObserver, type PromptOperation } from '../../src/prompts/index.js';
import { completion, FakeLlm, type ReplyFn } from './fake-llm.js';

const fakes: FakeLlm[] = [];
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

async function fake(reply?: ReplyFn): Promise<FakeLlm> {
  const f = await FakeLlm.start(reply);
  fakes.push(f);
  return f;
}

function provider(f: FakeLlm, name: string, key?: string, keyEnv?: string): OpenAiCompatibleProvider {
  return new OpenAiCompatibleProvider({ name, baseUrl: f.baseUrl, model: `${name}-model`, apiKey: key, apiKeyEnv: keyEnv });
}

class Recorder implements LlmObserver {
  readonly attempts: { operation: PromptOperation; provider: string; outcome: string }[] = [];
  attempt(operation: PromptOperation, provider: string, outcome: string): void {
    this.attempts.push({ operation, provider, outcome });
  }
}

function ask(set: ProviderSet, budgetMs = 5000, signal = new AbortController().signal) {
  return set.complete({
    operation: 'enhance',
    messages: [
      { role: 'system', content: 'improve it' },
      { role: 'user', content: 'a fox' },
    ],
    maxTokens: 100,
    temperature: 0.5,
    budgetMs,
    signal,
    accept: promptFromReply,
  });
}

async function failureOf(promise: Promise<unknown>): Promise<LlmChainError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LlmChainError);
  return err as LlmChainError;
}

describe('an OpenAI-compatible provider', () => {
  it('posts a chat completion with the key as a bearer token and returns the text', async () => {
    const f = await fake(() => ({ content: 'a red fox in fresh snow' }));
    const reply = await provider(f, 'a', 'sk-test-0123456789', 'A_KEY').complete({
      messages: [{ role: 'user', content: 'a fox' }],
      maxTokens: 50,
      temperature: 0.2,
      timeoutMs: 2000,
      signal: new AbortController().signal,
    });
    expect(reply).toMatchObject({ content: 'a red fox in fresh snow', provider: 'a', model: 'a-model' });
    expect(f.calls[0]).toMatchObject({ path: '/v1/chat/completions', authorization: 'Bearer sk-test-0123456789' });
    expect(f.calls[0]?.body).toMatchObject({ model: 'a-model', max_tokens: 50, temperature: 0.2, messages: [{ role: 'user', content: 'a fox' }] });
  });

  it('sends no authorization header to a server that needs no key', async () => {
    const f = await fake();
    await provider(f, 'local').complete({ messages: [], maxTokens: 5, temperature: 0, timeoutMs: 2000, signal: new AbortController().signal });
    expect(f.calls[0]?.authorization).toBeUndefined();
  });

  it.each([
    [429, 'rate_limited', true],
    [500, 'server_error', true],
    [503, 'server_error', true],
    [401, 'client_error', false],
    [400, 'client_error', false],
  ])('maps HTTP %i to %s (retryable: %s)', async (status, kind, retryable) => {
    const f = await fake(() => ({ status, body: { error: { message: `status ${status}` } } }));
    const err = await provider(f, 'a', 'k'.repeat(20), 'K')
      .complete({ messages: [], maxTokens: 5, temperature: 0, timeoutMs: 2000, signal: new AbortController().signal })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmError);
    expect(err).toMatchObject({ kind, status, retryable });
    expect((err as Error).message).toContain(`status ${status}`);
  });

  it('never puts its key into an error, even when the server echoes it', async () => {
    const key = 'sk-secret-abcdefghijklmnop';
    const f = await fake((call) => ({ status: 401, body: { error: { message: `invalid key ${call.authorization ?? ''}` } } }));
    const err = (await provider(f, 'a', key, 'K')
      .complete({ messages: [], maxTokens: 5, temperature: 0, timeoutMs: 2000, signal: new AbortController().signal })
      .catch((e: unknown) => e)) as Error;
    expect(err.message).toContain('invalid key');
    expect(err.message).not.toContain(key);
  });

  it.each([
    ['a body that is not JSON', 'oops, not json'],
    ['no choices', { object: 'chat.completion', choices: [] }],
    ['an empty text', completion('   ')],
    ['a text that is not a string', { choices: [{ message: { content: 42 } }] }],
  ])('calls %s a malformed reply', async (_name, body) => {
    const f = await fake(() => ({ body }));
    const err = await provider(f, 'a')
      .complete({ messages: [], maxTokens: 5, temperature: 0, timeoutMs: 2000, signal: new AbortController().signal })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'malformed', retryable: true });
  });

  it('refuses a reply larger than 1 MiB without reading it all', async () => {
    const f = await fake(() => ({ body: 'x'.repeat(2 * 1024 * 1024) }));
    const err = await provider(f, 'a')
      .complete({ messages: [], maxTokens: 5, temperature: 0, timeoutMs: 5000, signal: new AbortController().signal })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'malformed' });
    expect((err as Error).message).toContain('larger than');
  });

  it('gives up at its timeout and hangs up on the server', async () => {
    const f = await fake(() => ({ delayMs: 5000 }));
    const err = await provider(f, 'a')
      .complete({ messages: [], maxTokens: 5, temperature: 0, timeoutMs: 100, signal: new AbortController().signal })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'timeout', retryable: true });
    await expect.poll(() => f.calls[0]?.aborted).toBe(true);
  });

  it('fails at once without a call when its key variable is not set', async () => {
    const f = await fake();
    const err = await provider(f, 'a', undefined, 'MISSING_KEY_VAR')
      .complete({ messages: [], maxTokens: 5, temperature: 0, timeoutMs: 2000, signal: new AbortController().signal })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'no_api_key' });
    expect((err as Error).message).toContain('MISSING_KEY_VAR');
    expect(f.calls).toHaveLength(0);
  });

  it('reports an unreachable server as a network failure', async () => {
    const p = new OpenAiCompatibleProvider({ name: 'gone', baseUrl: 'http://127.0.0.1:1/v1', model: 'm', apiKey: undefined, apiKeyEnv: undefined });
    const err = await p.complete({ messages: [], maxTokens: 5, temperature: 0, timeoutMs: 2000, signal: new AbortController().signal }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'network', retryable: true });
  });

  it('shows its endpoint without credentials or query', () => {
    const p = new OpenAiCompatibleProvider({ name: 'x', baseUrl: 'https://api.example.com/v1/', model: 'm', apiKey: 'secret-key-xxxxxxxx', apiKeyEnv: 'X' });
    expect(p.endpoint).toBe('https://api.example.com/v1/chat/completions');
    expect(p.credentials).toBe('set');
  });
});

describe('fallback strategy', () => {
  it('asks the next provider after a 429, a 5xx, a timeout or a malformed reply', async () => {
    for (const failing of [{ status: 429 }, { status: 502 }, { delayMs: 3000 }, { body: 'garbage' }]) {
      const a = await fake(() => failing);
      const b = await fake(() => ({ content: 'from b' }));
      const observer = new Recorder();
      const set = new ProviderSet(
        [
          { provider: provider(a, 'a'), timeoutMs: 200 },
          { provider: provider(b, 'b'), timeoutMs: 2000 },
        ],
        'fallback',
        observer,
      );
      const answer = await ask(set);
      expect(answer).toMatchObject({ content: 'from b', provider: 'b', providerFallback: true });
      expect(observer.attempts.map((x) => x.provider)).toEqual(['a', 'b']);
      expect(observer.attempts[1]?.outcome).toBe('ok');
    }
  });

  it('stops at a refusal (4xx): the request itself is wrong', async () => {
    const a = await fake(() => ({ status: 400, body: { error: { message: 'unknown model' } } }));
    const b = await fake();
    const set = new ProviderSet(
      [
        { provider: provider(a, 'a'), timeoutMs: 2000 },
        { provider: provider(b, 'b'), timeoutMs: 2000 },
      ],
      'fallback',
    );
    const err = await failureOf(ask(set));
    expect(err.message).toContain('a: client_error');
    expect(b.calls).toHaveLength(0);
  });

  it('moves past a provider without its key', async () => {
    const a = await fake();
    const b = await fake(() => ({ content: 'from b' }));
    const set = new ProviderSet(
      [
        { provider: provider(a, 'a', undefined, 'NO_SUCH_KEY_VAR'), timeoutMs: 2000 },
        { provider: provider(b, 'b'), timeoutMs: 2000 },
      ],
      'fallback',
    );
    expect((await ask(set)).provider).toBe('b');
  });

  it('keeps within the budget over the whole chain and says what each provider did', async () => {
    const a = await fake(() => ({ delayMs: 5000 }));
    const b = await fake(() => ({ delayMs: 5000 }));
    const set = new ProviderSet(
      [
        { provider: provider(a, 'a'), timeoutMs: 10_000 },
        { provider: provider(b, 'b'), timeoutMs: 10_000 },
      ],
      'fallback',
    );
    const err = await failureOf(ask(set, 300));
    expect(err.failures[0]).toMatchObject({ provider: 'a', kind: 'timeout' });
    // The budget went on the first: the second was not asked, or given only what was left.
    expect(err.failures.every((f) => f.kind === 'timeout')).toBe(true);
    expect(err.kind).toBe('timeout');
  });

  it('takes a usable prompt out of the reply (reasoning, fences, labels, quotes) and counts a reply without one as malformed', async () => {
    const a = await fake(() => ({ content: '<think>hmm</think>' }));
    const b = await fake(() => ({ content: '<think>plan it</think>\n```\nEnhanced prompt: "A fox leaps over a frozen river"\n```' }));
    const observer = new Recorder();
    const set = new ProviderSet(
      [
        { provider: provider(a, 'a'), timeoutMs: 2000 },
        { provider: provider(b, 'b'), timeoutMs: 2000 },
      ],
      'fallback',
      observer,
    );
    expect((await ask(set)).content).toBe('A fox leaps over a frozen river');
    expect(observer.attempts[0]?.outcome).toBe('malformed');
  });
});

describe('race strategy', () => {
  it('takes the first answer and aborts the slower providers', async () => {
    const slow = await fake(() => ({ delayMs: 3000, content: 'slow' }));
    const fast = await fake(() => ({ delayMs: 50, content: 'fast' }));
    const observer = new Recorder();
    const set = new ProviderSet(
      [
        { provider: provider(slow, 'slow'), timeoutMs: 10_000 },
        { provider: provider(fast, 'fast'), timeoutMs: 10_000 },
      ],
      'race',
      observer,
    );
    const answer = await ask(set);
    expect(answer).toMatchObject({ content: 'fast', provider: 'fast' });
    await expect.poll(() => slow.calls[0]?.aborted).toBe(true);
    await expect.poll(() => observer.attempts.find((x) => x.provider === 'slow')?.outcome).toBe('aborted');
  });

  it('waits for a slower success when the faster one fails', async () => {
    const broken = await fake(() => ({ status: 500 }));
    const slower = await fake(() => ({ delayMs: 200, content: 'slower but fine' }));
    const set = new ProviderSet(
      [
        { provider: provider(broken, 'broken'), timeoutMs: 2000 },
        { provider: provider(slower, 'slower'), timeoutMs: 2000 },
      ],
      'race',
    );
    expect((await ask(set)).content).toBe('slower but fine');
  });

  it('fails with every provider named when all fail', async () => {
    const a = await fake(() => ({ status: 503 }));
    const b = await fake(() => ({ body: 'not json' }));
    const set = new ProviderSet(
      [
        { provider: provider(a, 'a'), timeoutMs: 2000 },
        { provider: provider(b, 'b'), timeoutMs: 2000 },
      ],
      'race',
    );
    const err = await failureOf(ask(set));
    expect(err.message).toMatch(/a: server_error/);
    expect(err.message).toMatch(/b: malformed/);
  });
});

describe('a caller that goes away', () => {
  it.each(['fallback', 'race'] as const)('aborts every call in flight (%s)', async (strategy) => {
    const a = await fake(() => ({ delayMs: 5000 }));
    const b = await fake(() => ({ delayMs: 5000 }));
    const set = new ProviderSet(
      [
        { provider: provider(a, 'a'), timeoutMs: 10_000 },
        { provider: provider(b, 'b'), timeoutMs: 10_000 },
      ],
      strategy,
    );
    const controller = new AbortController();
    const pending = ask(set, 10_000, controller.signal);
    await expect.poll(() => a.calls.length).toBe(1);
    controller.abort();
    const err = await failureOf(pending);
    expect(err.aborted).toBe(true);
    await expect.poll(() => a.calls[0]?.aborted).toBe(true);
    if (strategy === 'race') await expect.poll(() => b.calls[0]?.aborted).toBe(true);
    else expect(b.calls).toHaveLength(0);
  });
});
