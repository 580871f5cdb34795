/**
 * PROTOCOL.md's rules as one suite, run against whatever a client can connect to: a
 * single server (rules.test.ts) or a router in front of replicas
 * (test/cluster/rules-via-router.test.ts). A rule holds for a client whatever serves it,
 * so every test talks only to `wsUrl`; what a test checks behind the socket (sessions
 * held, a session's toggles) comes from the target, which knows where to look.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SYNTHETIC_CONTINUATION_KIND, type GenerationEvent, type Generator, type SegmentRequest } from '../../src/generation/index.js';
import type { SessionView } from '../../src/server/index.js';
import { TestClient } from './harness.js';

export interface RulesTarget {
  /** Where clients connect (`ws://…/v1/stream`). */
  wsUrl: string;
  /** Sessions held behind `wsUrl`, every process counted (pending inits included). */
  sessionCount(): Promise<number>;
  /** The sessions as the server running them sees them. */
  sessions(): Promise<SessionView[]>;
  close(): Promise<void>;
}

export interface TargetParts {
  /** The generators of the server that runs sessions (one per worker slot), instead of the configured one. */
  generators?: Generator[];
}

/** Starts a fresh target with `patch` over the test config (for every process of it). */
export type StartTarget = (patch?: Record<string, unknown>, parts?: TargetParts) => Promise<RulesTarget>;

export interface RulesSuiteOptions {
  /**
   * Rules to leave out, by test name, each with the reason; the reason is printed as the
   * skipped test's name, so a run shows what was not checked and why.
   */
  exclude?: Record<string, string>;
}

/** A model that fails its first segment after one step. */
class FailingGenerator implements Generator {
  readonly modelId = 'test/failing';
  readonly audio = null;

  async *generate(request: SegmentRequest): AsyncGenerator<GenerationEvent> {
    yield { type: 'step', step: 1, totalSteps: request.numInferenceSteps, stepMs: 0, elapsedMs: 0 };
    throw new Error('the model ran out of memory');
  }
}

function noNulls(value: unknown): boolean {
  if (value === null || value === undefined) return false;
  if (Array.isArray(value)) return value.every(noNulls);
  if (typeof value === 'object') return Object.values(value).every(noNulls);
  return true;
}

export function protocolRules(start: StartTarget, options: RulesSuiteOptions = {}): void {
  let target: RulesTarget | undefined;
  const begin = async (patch: Record<string, unknown> = {}, parts: TargetParts = {}): Promise<RulesTarget> => {
    target = await start(patch, parts);
    return target;
  };
  afterEach(async () => {
    await target?.close();
    target = undefined;
  });

  /** `it`, unless the target excludes the rule (then a skipped test names the reason). */
  const rule = (name: string, body: () => Promise<void>): void => {
    const reason = options.exclude?.[name];
    if (reason === undefined) it(name, body);
    else it.skip(`${name} (excluded: ${reason})`, body);
  };

  /** Frames are handled in order: once this reply is in, everything sent before it was handled and answered. */
  const barrier = async (client: TestClient): Promise<void> => {
    const errors = client.ofType('error').length;
    client.send({ type: 'snapshot_state' });
    await client.waitFor('error', errors + 1);
  };

  describe('the opening frame', () => {
    for (const [name, frame] of [
      ['another message type', JSON.stringify({ type: 'snapshot_state' })],
      ['an unknown type', JSON.stringify({ type: 'hello' })],
      ['invalid JSON', '{not json'],
      ['a session_init_v2 with a mistyped field', JSON.stringify({ type: 'session_init_v2', single_clip_mode: 'yes' })],
    ] as const) {
      rule(`rejects ${name} with invalid_message and close 1003`, async () => {
        const server = await begin();
        const client = await TestClient.connect(server.wsUrl);
        client.sendRaw(frame);
        const closed = await client.closed;
        expect(closed.code).toBe(1003);
        expect(client.messages).toHaveLength(1);
        expect(client.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message', retryable: false });
        expect(await server.sessionCount()).toBe(0);
      });
    }

    rule('rejects a binary opening frame with invalid_message and close 1003', async () => {
      const server = await begin();
      const client = await TestClient.connect(server.wsUrl);
      client.sendRaw(Buffer.from([1, 2, 3]), true);
      expect((await client.closed).code).toBe(1003);
      expect(client.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message' });
    });

    rule('names the offending field in the error message', async () => {
      const server = await begin();
      const client = await TestClient.connect(server.wsUrl);
      client.send({ type: 'session_init_v2', stream_mode: 'webm' });
      await client.closed;
      expect(client.messages[0]?.message).toMatch(/^stream_mode: /);
    });

    rule('times a connection out when no init arrives within the init deadline, however long the idle timeout', async () => {
      const server = await begin({ limits: { init_timeout_seconds: 0.3 }, streaming: { session_timeout_seconds: 300 } });
      const client = await TestClient.connect(server.wsUrl);
      const closed = await client.closed;
      expect(closed.code).toBe(1000);
      expect(client.messages).toEqual([{ type: 'session_timeout', timeout_seconds: 0.3 }]);
    });
  });

  describe('after init', () => {
    rule('answers an invalid frame with a retryable invalid_message and keeps the connection', async () => {
      const server = await begin();
      const client = await TestClient.init(server.wsUrl);
      await client.waitFor('ltx2_stream_start');
      client.sendRaw('{oops');
      client.send({ type: 'enhancement_updated', enabled: 'yes' });
      client.sendRaw(Buffer.from('binary'), true);
      await client.waitFor('error', 3);
      const errors = client.ofType('error');
      expect(errors.map((e) => [e.code, e.retryable])).toEqual([
        ['invalid_message', true],
        ['invalid_message', true],
        ['invalid_message', true],
      ]);
      expect(errors[1]?.message).toBe('enabled: expected boolean');
      client.send({ type: 'snapshot_state' });
      await client.waitFor('error', 4);
      expect(client.ws.readyState).toBe(client.ws.OPEN);
      client.close();
    });

    rule('applies valid toggles silently', async () => {
      const server = await begin();
      const client = await TestClient.init(server.wsUrl);
      await client.waitFor('ltx2_stream_start');
      const before = client.received.length;
      client.send({ type: 'enhancement_updated', enabled: true });
      client.send({ type: 'auto_extension_updated', enabled: false });
      client.send({ type: 'loop_generation_updated', enabled: false });
      client.send({ type: 'generation_paused_updated', paused: true });
      client.send({ type: 'seed_prompts_updated', seed_prompts: ['x', 'y'] });
      await barrier(client);
      // Only the barrier's own reply came back.
      expect(client.received.slice(before).map((r) => (r.kind === 'json' ? r.message.type : 'binary'))).toEqual(['error']);
      const session = (await server.sessions())[0];
      expect(session?.enhancementEnabled).toBe(true);
      expect(session?.generationPaused).toBe(true);
      expect(session?.curatedPrompts).toEqual(['x', 'y']);
      client.close();
    });

    rule('applies toggles that arrive right behind the init, in the same TCP segment', async () => {
      const server = await begin({ streaming: { generation_segment_cap: 1 } });
      const client = await TestClient.connect(server.wsUrl);
      // cork: the three frames leave as one write, so the server reads them in one tick.
      const socket = (client.ws as unknown as { _socket: import('node:net').Socket })._socket;
      socket.cork();
      client.send({ type: 'session_init_v2' });
      client.send({ type: 'seed_prompts_updated', seed_prompts: ['right behind'] });
      client.send({ type: 'loop_generation_updated', enabled: true });
      socket.uncork();
      const started = await client.waitFor('ltx2_segment_start');
      expect(started).toMatchObject({ prompt: 'right behind', source: 'curated' });
      await client.closed;
    });

    rule('answers snapshot_state with no stored state with internal_error and keeps the connection', async () => {
      const server = await begin();
      const client = await TestClient.init(server.wsUrl);
      await client.waitFor('ltx2_stream_start');
      client.send({ type: 'snapshot_state' });
      const error = await client.waitFor('error');
      expect(error).toMatchObject({ code: 'internal_error', retryable: false });
      // Still served: a second request gets its own answer on the same connection.
      client.send({ type: 'snapshot_state' });
      await client.waitFor('error', 2);
      expect(client.ws.readyState).toBe(client.ws.OPEN);
      client.close();
    });

    rule('keeps unknown init fields as session metadata', async () => {
      const server = await begin();
      const client = await TestClient.init(server.wsUrl, { client_id: 'c1', ui_theme: 'dark' });
      await client.waitFor('ltx2_stream_start');
      const session = (await server.sessions())[0];
      expect(session?.metadata).toEqual({ ui_theme: 'dark' });
      expect(session?.clientId).toBe('c1');
      client.close();
    });

    rule('sends gpu_assigned with the worker id, session timeout and model id, then ltx2_stream_start with the stream geometry', async () => {
      const server = await begin({ streaming: { session_timeout_seconds: 42 } });
      const client = await TestClient.init(server.wsUrl, { preset: 'demo' });
      await client.waitFor('ltx2_stream_start');
      expect(client.messages.slice(0, 3)).toEqual([
        { type: 'queue_status', position: 0, queue_depth: 0 },
        { type: 'gpu_assigned', gpu_id: 0, session_timeout: 42, model_id: 'livegen/synthetic', resume_token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) },
        { type: 'ltx2_stream_start', preset: 'demo', width: 192, height: 112, fps: 24, num_frames: 24 },
      ]);
      client.close();
    });

    rule('rejects an init naming another preset than the server serves with preset_mismatch', async () => {
      const server = await begin({ streaming: { preset: 'ltx2-distilled' } });
      const client = await TestClient.init(server.wsUrl, { preset: 'wan' });
      expect((await client.closed).code).toBe(1003);
      expect(client.messages[0]).toMatchObject({ type: 'error', code: 'preset_mismatch' });
    });
  });

  describe('budgets', () => {
    rule('rejects a session past max_sessions with session_rejected and close 1013', async () => {
      const server = await begin({ streaming: { max_sessions: 1 } });
      const first = await TestClient.init(server.wsUrl);
      await first.waitFor('ltx2_stream_start');
      // Connections waiting for their init are counted apart: the second is refused when its init arrives.
      const second = await TestClient.init(server.wsUrl);
      expect((await second.closed).code).toBe(1013);
      expect(second.messages).toEqual([expect.objectContaining({ type: 'error', code: 'session_rejected' })]);
      first.close();
    });

    rule('refuses a connection past max_pending_inits with session_rejected and close 1013, without counting it as a session', async () => {
      const server = await begin({ limits: { max_pending_inits: 2 }, streaming: { max_sessions: 16 } });
      const waiting = [await TestClient.connect(server.wsUrl), await TestClient.connect(server.wsUrl)];
      const third = await TestClient.connect(server.wsUrl);
      expect((await third.closed).code).toBe(1013);
      expect(third.messages).toEqual([expect.objectContaining({ type: 'error', code: 'session_rejected', retryable: true })]);
      // A real session still gets in while the pending ones wait.
      waiting[0]?.send({ type: 'session_init_v2' });
      await waiting[0]?.waitFor('gpu_assigned');
      for (const client of waiting) client.close();
    });

    rule('ends an idle active session with session_timeout and close 1000', async () => {
      const server = await begin({ streaming: { session_timeout_seconds: 0.4 } });
      const client = await TestClient.init(server.wsUrl);
      await client.waitFor('ltx2_stream_start');
      const closed = await client.closed;
      expect(closed.code).toBe(1000);
      expect(client.messages.at(-1)).toEqual({ type: 'session_timeout', timeout_seconds: 0.4 });
      expect(await server.sessionCount()).toBe(0);
    });

    rule('completes the session at the segment cap with reason segment_cap and close 1000', async () => {
      const server = await begin({ streaming: { generation_segment_cap: 2 } });
      const client = await TestClient.init(server.wsUrl);
      await client.waitFor('ltx2_stream_start');
      client.send({ type: 'segment_prompt_source', prompt: 'one' });
      client.send({ type: 'segment_prompt_source', prompt: 'two' });
      const closed = await client.closed;
      expect(closed.code).toBe(1000);
      expect(client.ofType('ltx2_segment_complete').map((m) => m.segment_idx)).toEqual([0, 1]);
      expect(client.messages.at(-1)).toEqual({ type: 'ltx2_stream_complete', reason: 'segment_cap' });
    });

    rule('answers a full per-session request queue with a retryable error, never a silent drop', async () => {
      const server = await begin({ streaming: { max_pending_requests: 2 }, generator: { synthetic: { pace: 'realtime', step_ms: 0 } } });
      const client = await TestClient.init(server.wsUrl);
      await client.waitFor('ltx2_stream_start');
      client.send({ type: 'segment_prompt_source', prompt: 'p0' });
      await client.waitFor('ltx2_segment_start');
      for (let i = 1; i < 4; i++) client.send({ type: 'segment_prompt_source', prompt: `p${i}` });
      const error = await client.waitFor('error');
      expect(error).toMatchObject({ code: 'gpu_unavailable', retryable: true });
      // One runs, two wait, one is refused: three segments in all.
      await client.waitFor('ltx2_segment_complete', 3);
      expect(client.ofType('ltx2_segment_start').map((m) => m.prompt)).toEqual(['p0', 'p1', 'p2']);
      client.close();
    });
  });

  describe('admission queue', () => {
    rule('queues sessions past the free workers with live positions, and moves them up when one ahead leaves', async () => {
      const server = await begin();
      const a = await TestClient.init(server.wsUrl);
      await a.waitFor('gpu_assigned');
      const b = await TestClient.init(server.wsUrl);
      await b.until(() => b.ofType('queue_status').some((m) => m.position === 0 && m.queue_depth === 1), 'b first in the queue');
      const c = await TestClient.init(server.wsUrl);
      await c.until(() => c.ofType('queue_status').some((m) => m.position === 1 && m.queue_depth === 2), 'c second of two');
      b.close();
      await c.until(() => c.ofType('queue_status').at(-1)?.position === 0, 'c told it moved up');
      a.close();
      await c.waitFor('gpu_assigned');
      c.close();
    });

    rule('rejects a session past max_queue with session_rejected and close 1013', async () => {
      const server = await begin({ streaming: { max_queue: 1 } });
      const a = await TestClient.init(server.wsUrl);
      await a.waitFor('gpu_assigned');
      const b = await TestClient.init(server.wsUrl);
      await b.waitFor('queue_status');
      const c = await TestClient.init(server.wsUrl);
      expect((await c.closed).code).toBe(1013);
      expect(c.messages).toEqual([expect.objectContaining({ type: 'error', code: 'session_rejected', retryable: true })]);
      a.close();
      b.close();
    });

    rule('ends a session that waits past the queue timeout with a retryable gpu_unavailable and close 1013', async () => {
      const server = await begin({ streaming: { queue_timeout_seconds: 0.3 } });
      const a = await TestClient.init(server.wsUrl);
      await a.waitFor('gpu_assigned');
      const b = await TestClient.init(server.wsUrl);
      expect((await b.closed).code).toBe(1013);
      expect(b.messages.at(-1)).toMatchObject({ type: 'error', code: 'gpu_unavailable', retryable: true });
      expect(b.ofType('gpu_assigned')).toHaveLength(0);
      a.close();
    });

    rule('gives the worker of a client that leaves mid-segment to the next session, the segment unfinished', async () => {
      const server = await begin({ default_request: { sampling: { num_frames: 240 } }, generator: { synthetic: { pace: 'realtime', step_ms: 0 } } });
      const a = await TestClient.init(server.wsUrl);
      await a.waitFor('ltx2_stream_start');
      a.send({ type: 'segment_prompt_source', prompt: 'ten seconds long' });
      await a.until(() => a.received.some((r) => r.kind === 'binary'), 'media flowing');
      const b = await TestClient.init(server.wsUrl);
      await b.waitFor('queue_status');
      a.close();
      // The 10 s segment did not have to end first: b is streaming, a's segment never completed.
      b.send({ type: 'segment_prompt_source', prompt: 'next' });
      await b.waitFor('ltx2_segment_start');
      expect(b.ofType('ltx2_segment_start')[0]?.prompt).toBe('next');
      expect(a.ofType('ltx2_segment_complete')).toHaveLength(0);
      b.close();
    });
  });

  describe('failures and continuation', () => {
    rule('ends the session on a generator failure with a retryable worker_failed, then close 1011', async () => {
      const server = await begin({}, { generators: [new FailingGenerator()] });
      const client = await TestClient.init(server.wsUrl);
      await client.waitFor('ltx2_stream_start');
      client.send({ type: 'segment_prompt_source', prompt: 'doomed' });
      expect((await client.closed).code).toBe(1011);
      const types = client.messages.map((m) => m.type);
      expect(client.ofType('error')).toEqual([expect.objectContaining({ code: 'worker_failed', retryable: true })]);
      // The error first, then the stream's end.
      expect(types.indexOf('ltx2_stream_complete')).toBeGreaterThan(types.indexOf('error'));
      expect(client.ofType('ltx2_stream_complete')).toEqual([{ type: 'ltx2_stream_complete', reason: 'error' }]);
    });

    rule('stores the init continuation_state, feeds it to the first segment, then returns each segment state', async () => {
      const server = await begin();
      const payload = { nextFrameIndex: 1000, fps: 24, sampleRate: 48_000, audioPhase: 0, audioOriginFrame: 0, audioOriginSample: 0, motionSeed: 7, prompt: 'before' };
      const state = { kind: SYNTHETIC_CONTINUATION_KIND, payload };
      const client = await TestClient.init(server.wsUrl, { continuation_state: state });
      await client.waitFor('ltx2_stream_start');
      client.send({ type: 'snapshot_state' });
      expect((await client.waitFor('continuation_state_snapshot')).state).toEqual(state);
      client.send({ type: 'segment_prompt_source', prompt: 'after' });
      await client.waitFor('ltx2_segment_complete');
      client.send({ type: 'snapshot_state' });
      const next = (await client.waitFor('continuation_state_snapshot', 2)).state as { kind: string; payload: Record<string, unknown> };
      // The segment went on from frame 1000 for its 24 frames.
      expect(next.kind).toBe(state.kind);
      expect(next.payload).toMatchObject({ nextFrameIndex: 1024, prompt: 'after' });
      client.close();
    });
  });

  describe('every server frame', () => {
    rule('carries no null or undefined field', async () => {
      const server = await begin();
      const client = await TestClient.init(server.wsUrl);
      await client.waitFor('ltx2_stream_start');
      client.send({ type: 'segment_prompt_source', prompt: 'x' });
      await client.waitFor('ltx2_segment_complete');
      client.send({ type: 'snapshot_state' });
      await client.waitFor('continuation_state_snapshot');
      expect(client.messages.every(noNulls)).toBe(true);
      client.close();
    });
  });
}
