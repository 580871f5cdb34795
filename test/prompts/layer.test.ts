/**
 * The prompt layer without sockets: reply cleaning, system prompts from a directory (and
 * their reload), the safety filter (blocklist and a real fastText classifier), and the
 * layer's operations against a fake OpenAI-compatible server.
 */
import { mkdtemp, rm, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_SYSTEM_PROMPTS,
  MAX_PROMPT_CHARS,
  OpenAiCompatibleProvider,
  promptFromReply,
  promptListFromReply,
  PromptLayer,
  PromptSafety,
  ProviderSet,
  SystemPrompts,
  type PromptObserver,
} from '../../src/prompts/index.js';
import { writeTinySafetyModel } from '../support/safety-model.js';
import { FakeLlm, type ReplyFn } from './fake-llm.js';

let dir: string;
let modelPath: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'livegen-prompts-'));
  modelPath = await writeTinySafetyModel(join(dir, 'tiny-safety.bin'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const fakes: FakeLlm[] = [];
const closers: (() => void)[] = [];
afterEach(async () => {
  closers.splice(0).forEach((c) => c());
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

describe('prompts taken out of replies', () => {
  it.each([
    ['plain text', 'A fox in the snow.', 'A fox in the snow.'],
    ['surrounding whitespace and newlines', '\n  A fox\n in the snow  \n', 'A fox in the snow'],
    ['a reasoning block', '<think>the user wants a fox</think>A fox in the snow', 'A fox in the snow'],
    ['a code fence', '```text\nA fox in the snow\n```', 'A fox in the snow'],
    ['a label', 'Enhanced prompt: A fox in the snow', 'A fox in the snow'],
    ['quotes', '"A fox in the snow"', 'A fox in the snow'],
    ['JSON with a prompt field', '{"prompt": "A fox in the snow"}', 'A fox in the snow'],
    ['a JSON string', '"A fox in the \\"snow\\""', 'A fox in the "snow"'],
  ])('%s', (_name, reply, prompt) => {
    expect(promptFromReply(reply)).toBe(prompt);
  });

  it.each([
    ['nothing', '   '],
    ['only reasoning', '<think>hmm</think>'],
    ['reasoning cut off', '<think>still thinking about the fox'],
    ['JSON without a prompt', '{"answer": 42}'],
  ])('finds none in %s', (_name, reply) => {
    expect(promptFromReply(reply)).toBeUndefined();
  });

  it('cuts a prompt longer than the limit at a word', () => {
    const p = promptFromReply('word '.repeat(1000)) as string;
    expect(p.length).toBeLessThanOrEqual(MAX_PROMPT_CHARS);
    expect(p.endsWith('word')).toBe(true);
  });

  it('reads a list as a JSON array, an object with prompts, or numbered lines', () => {
    expect(promptListFromReply('["a", "b"]')).toEqual(['a', 'b']);
    expect(promptListFromReply('{"prompts": [{"prompt": "a"}, "b"]}')).toEqual(['a', 'b']);
    expect(promptListFromReply('1. a fox\n2) a hare\n- an owl\n\n')).toEqual(['a fox', 'a hare', 'an owl']);
    expect(promptListFromReply('[]')).toBeUndefined();
  });
});

describe('system prompts', () => {
  it('uses the built-in ones without a directory', async () => {
    const prompts = new SystemPrompts(undefined);
    await prompts.start();
    expect(prompts.get('enhance')).toBe(DEFAULT_SYSTEM_PROMPTS.enhance);
    expect(prompts.sources()).toEqual({ enhance: 'default', auto_extend: 'default', rewrite: 'default' });
  });

  it('reads FastVideo-named files (.txt or .md), keeps defaults for the others, and follows changes without a restart', async () => {
    const promptDir = await mkdtemp(join(dir, 'system-'));
    await writeFile(join(promptDir, 'enhance.txt'), '  make it cinematic  \n');
    await writeFile(join(promptDir, 'auto_extend.md'), 'continue the story');
    await writeFile(join(promptDir, 'rewrite.txt'), '   \n');
    const reloads: unknown[] = [];
    const prompts = new SystemPrompts(promptDir, undefined, (s) => reloads.push(s));
    closers.push(() => prompts.close());
    await prompts.start();
    expect(prompts.get('enhance')).toBe('make it cinematic');
    expect(prompts.get('auto_extend')).toBe('continue the story');
    expect(prompts.get('rewrite')).toBe(DEFAULT_SYSTEM_PROMPTS.rewrite);
    expect(prompts.sources().enhance).toBe(join(promptDir, 'enhance.txt'));
    // Edited on disk: picked up by the watcher.
    await writeFile(join(promptDir, 'enhance.txt'), 'make it noir');
    await expect.poll(() => prompts.get('enhance'), { timeout: 5000 }).toBe('make it noir');
    // Removed: back to the default; and reload() (SIGHUP) reads at once.
    await unlink(join(promptDir, 'auto_extend.md'));
    await prompts.reload();
    expect(prompts.get('auto_extend')).toBe(DEFAULT_SYSTEM_PROMPTS.auto_extend);
    expect(reloads.length).toBeGreaterThanOrEqual(3);
  });

  it('keeps the defaults and says so when the directory is missing', async () => {
    const errors: string[] = [];
    const prompts = new SystemPrompts(join(dir, 'no-such-dir'), (m) => errors.push(m));
    closers.push(() => prompts.close());
    await prompts.start();
    expect(prompts.get('enhance')).toBe(DEFAULT_SYSTEM_PROMPTS.enhance);
    expect(errors.join('\n')).toContain('cannot follow changes');
  });
});

describe('the safety filter', () => {
  it('lets everything through when disabled', async () => {
    const safety = new PromptSafety({ enabled: false, blocklistPath: join(dir, 'x'), blockThreshold: 0.5, unsafeLabels: ['unsafe'] });
    await safety.start();
    expect(safety.check('gore everywhere')).toEqual({ allowed: true });
    expect(safety.status()).toMatchObject({ enabled: false, available: false });
  });

  it('blocks whole words and phrases of the blocklist, case and punctuation aside, and re-reads it on reload', async () => {
    const path = join(dir, 'blocklist.txt');
    await writeFile(path, '# test terms\nGore\nweapon attack   # a phrase\n\n');
    const safety = new PromptSafety({ enabled: true, blocklistPath: path, blockThreshold: 0.5, unsafeLabels: ['unsafe'] });
    await safety.start();
    expect(safety.check('Blood and GORE!')).toMatchObject({ allowed: false, filter: 'blocklist', reason: 'it contains the blocked term "gore"' });
    expect(safety.check('a sudden weapon-attack at dawn')).toMatchObject({ allowed: false });
    expect(safety.check('Gorey Street at night')).toEqual({ allowed: true });
    expect(safety.check('a weapon rack')).toEqual({ allowed: true });
    expect(safety.status()).toMatchObject({ enabled: true, available: true, blocklist: { terms: 2, loaded: true } });
    await writeFile(path, 'owl\n');
    await safety.reload();
    expect(safety.check('blood and gore')).toEqual({ allowed: true });
    expect(safety.check('an owl at night')).toMatchObject({ allowed: false });
  });

  it("blocks what FastVideo's fastText classifier labels unsafe at or above the threshold", async () => {
    const safety = new PromptSafety({ enabled: true, classifierPath: modelPath, blockThreshold: 0.5, unsafeLabels: ['unsafe'] });
    closers.push(() => safety.close());
    await safety.start();
    const verdict = safety.check('a gruesome bloodbath with gore after a weapon attack');
    expect(verdict).toMatchObject({ allowed: false, filter: 'classifier', label: 'unsafe' });
    expect(safety.check('a misty mountain lake at sunrise with birds over the water')).toEqual({ allowed: true });
    expect(safety.status()).toMatchObject({ available: true, classifier: { loaded: true, block_threshold: 0.5, unsafe_labels: ['unsafe'] } });
    // A threshold above any probability blocks nothing.
    const lenient = new PromptSafety({ enabled: true, classifierPath: modelPath, blockThreshold: 1.01, unsafeLabels: ['unsafe'] });
    closers.push(() => lenient.close());
    await lenient.start();
    expect(lenient.check('a gruesome bloodbath with gore after a weapon attack')).toEqual({ allowed: true });
  });

  it('says it is unavailable, and allows, when the classifier cannot be loaded', async () => {
    const logs: string[] = [];
    const path = join(dir, 'not-a-model.bin');
    await writeFile(path, 'this is not a model');
    const safety = new PromptSafety({ enabled: true, classifierPath: path, blockThreshold: 0.5, unsafeLabels: ['unsafe'], log: (_l, m) => logs.push(m) });
    await safety.start();
    expect(safety.check('gore')).toEqual({ allowed: true });
    const status = safety.status();
    expect(status.available).toBe(false);
    expect(status.classifier?.error).toContain(path);
    expect(logs.join('\n')).toContain('safety classifier unavailable');
  });
});

class Observed implements PromptObserver {
  readonly events: string[] = [];
  attempt(operation: string, provider: string, outcome: string): void {
    this.events.push(`attempt ${operation} ${provider} ${outcome}`);
  }
  fallback(operation: string, kind: string): void {
    this.events.push(`fallback ${operation} ${kind}`);
  }
  blocked(source: string, filter: string): void {
    this.events.push(`blocked ${source} ${filter}`);
  }
}

/** Generous deadlines unless a test is about them: a loaded machine must not turn a success into a timeout. */
async function layerWith(
  reply: ReplyFn,
  safety?: PromptSafety,
  timeouts = { enhanceMs: 10_000, autoExtensionMs: 10_000, rewriteMs: 10_000 },
): Promise<{ layer: PromptLayer; fake: FakeLlm; observer: Observed }> {
  const fake = await FakeLlm.start(reply);
  fakes.push(fake);
  const observer = new Observed();
  const provider = new OpenAiCompatibleProvider({ name: 'fake', baseUrl: fake.baseUrl, model: 'fake-model', apiKey: undefined, apiKeyEnv: undefined });
  const layer = new PromptLayer({
    providers: new ProviderSet([{ provider, timeoutMs: 5000 }], 'fallback', observer),
    systemPrompts: new SystemPrompts(undefined),
    safety: safety ?? new PromptSafety({ enabled: false, blockThreshold: 0.5, unsafeLabels: ['unsafe'] }),
    timeouts,
    maxTokens: 200,
    temperature: 0.7,
    historyPrompts: 2,
    observer,
  });
  await layer.start();
  closers.push(() => layer.close());
  return { layer, fake, observer };
}

describe('the prompt layer', () => {
  it('enhances with the story so far (the last few prompts) and says who wrote it', async () => {
    const { layer, fake } = await layerWith(() => ({ content: 'A red fox leaps over a frozen river at dawn' }));
    const out = await layer.enhance('a fox jumps', { history: ['one', 'two', 'three'], signal: new AbortController().signal });
    expect(out).toMatchObject({ prompt: 'A red fox leaps over a frozen river at dawn', original: 'a fox jumps', enhanced: true, provider: 'fake', model: 'fake-model', fallbackUsed: false });
    expect(fake.calls[0]?.system).toBe(DEFAULT_SYSTEM_PROMPTS.enhance);
    expect(fake.calls[0]?.user).toContain('1. two\n2. three');
    expect(fake.calls[0]?.user).not.toContain('one');
    expect(fake.calls[0]?.user).toContain('a fox jumps');
  });

  it('gives back the raw prompt with the reason when the LLM fails or is late', async () => {
    for (const reply of [{ status: 500 }, { delayMs: 3000 }, { body: 'garbage' }]) {
      const { layer, observer } = await layerWith(() => reply, undefined, { enhanceMs: 300, autoExtensionMs: 300, rewriteMs: 300 });
      const out = await layer.enhance('a fox jumps', { history: [], signal: new AbortController().signal });
      expect(out).toMatchObject({ prompt: 'a fox jumps', enhanced: false, fallbackUsed: true });
      expect(out.error).toMatch(/server_error|timeout|malformed/);
      expect(observer.events).toContain('fallback enhance raw');
    }
  });

  it('generates the raw prompt when the enhanced one is blocked', async () => {
    const path = join(dir, 'block-enhanced.txt');
    await writeFile(path, 'explosion\n');
    const safety = new PromptSafety({ enabled: true, blocklistPath: path, blockThreshold: 0.5, unsafeLabels: ['unsafe'] });
    const { layer, observer } = await layerWith(() => ({ content: 'a fox and a huge explosion' }), safety);
    const out = await layer.enhance('a fox', { history: [], signal: new AbortController().signal });
    expect(out).toMatchObject({ prompt: 'a fox', enhanced: false, fallbackUsed: true, provider: 'fake' });
    expect(out.error).toContain('blocked by the safety filter');
    expect(observer.events).toEqual(expect.arrayContaining(['blocked enhanced blocklist', 'fallback enhance raw']));
  });

  it('extends the story from the prompts so far and the planned ones, or repeats the last one on failure', async () => {
    const { layer, fake } = await layerWith((call) => (call.user.includes('fail') ? { status: 503 } : { content: 'The fox reaches the far bank' }));
    const out = await layer.extend({ lastPrompt: 'the fox crosses', curatedPrompts: ['plan a'], history: ['the fox wakes', 'the fox crosses'], segmentIdx: 2, signal: new AbortController().signal });
    expect(out).toMatchObject({ prompt: 'The fox reaches the far bank', original: 'the fox crosses', fallbackUsed: false, provider: 'fake' });
    expect(fake.calls[0]?.system).toBe(DEFAULT_SYSTEM_PROMPTS.auto_extend);
    expect(fake.calls[0]?.user).toContain('1. the fox wakes\n2. the fox crosses');
    expect(fake.calls[0]?.user).toContain('1. plan a');
    const failed = await layer.extend({ lastPrompt: 'fail here', curatedPrompts: [], history: ['fail here'], segmentIdx: 3, signal: new AbortController().signal });
    expect(failed).toMatchObject({ prompt: 'fail here', fallbackUsed: true });
  });

  it('rewrites into exactly the asked number of prompts, or says why not', async () => {
    const { layer } = await layerWith((call) => (call.user.includes('broken') ? { body: 'nope' } : { content: '["a", "b"]' }));
    const out = await layer.rewrite('a fox story', { count: 3, current: [], signal: new AbortController().signal });
    expect(out).toMatchObject({ ok: true, value: { prompts: ['a', 'b', 'b'], provider: 'fake' } });
    const failed = await layer.rewrite('broken', { count: 3, current: [], signal: new AbortController().signal });
    expect(failed.ok).toBe(false);
  });

  it('rejects with the signal when the caller goes away, and the LLM call is aborted', async () => {
    const { layer, fake } = await layerWith(() => ({ delayMs: 5000 }));
    const controller = new AbortController();
    const pending = layer.enhance('a fox', { history: [], signal: controller.signal });
    await expect.poll(() => fake.calls.length).toBe(1);
    controller.abort(new Error('client left'));
    await expect(pending).rejects.toThrow('client left');
    await expect.poll(() => fake.calls[0]?.aborted).toBe(true);
  });

  it('reports providers and filters without keys', async () => {
    const layer = new PromptLayer({
      providers: new ProviderSet(
        [{ provider: new OpenAiCompatibleProvider({ name: 'groq', baseUrl: 'https://api.groq.com/openai/v1', model: 'm', apiKey: 'gsk_supersecretvalue1234', apiKeyEnv: 'GROQ_API_KEY' }), timeoutMs: 3000 }],
        'race',
      ),
      systemPrompts: new SystemPrompts(undefined),
      safety: new PromptSafety({ enabled: false, blockThreshold: 0.5, unsafeLabels: ['unsafe'] }),
      timeouts: { enhanceMs: 1, autoExtensionMs: 2, rewriteMs: 3 },
      maxTokens: 1,
      temperature: 0,
      historyPrompts: 1,
    });
    const status = layer.status();
    expect(status.llm).toMatchObject({
      enabled: true,
      strategy: 'race',
      providers: [{ name: 'groq', model: 'm', endpoint: 'https://api.groq.com/openai/v1/chat/completions', api_key: 'set', timeout_ms: 3000 }],
      timeouts_ms: { enhance: 1, auto_extension: 2, rewrite: 3 },
    });
    expect(JSON.stringify(status)).not.toContain('supersecret');
  });
});
