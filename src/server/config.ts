import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { STREAM_MODES } from '../core/index.js';

/**
 * `livegen serve` configuration: one YAML file whose sections follow FastVideo's serve
 * config (`server`, `default_request.sampling`, `streaming`) plus livegen's own (`pool`,
 * `generator`, `media`, `logging`). Every field is optional; unknown fields are errors so
 * a typo never silently does nothing. Documented field by field in docs/config.md.
 */

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().min(0);
const evenPositiveInt = positiveInt.refine((n) => n % 2 === 0, 'must be even (yuv420p video)');

const ServerSection = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8000),
    /** On SIGTERM/SIGINT, how long running segments may finish before their sessions are closed. */
    shutdown_grace_seconds: z.number().min(0).default(30),
    /** A directory of static files served at `/` instead of livegen's player (e.g. the Dreamverse app's `out/`). */
    web_root: z.string().min(1).optional(),
  })
  .prefault({});

const MiB = 1024 * 1024;

const LimitsSection = z
  .strictObject({
    /** Largest client frame after the opening one; refused (close 1009) as soon as its header is read. */
    max_control_frame_bytes: positiveInt.default(MiB),
    /** Largest continuation state a client may hand in with its init (serialised JSON bytes). */
    max_continuation_state_bytes: positiveInt.default(8 * MiB),
    /** Per-connection send backlog past which media sends wait and the client's frames stop being read. */
    send_high_water_bytes: positiveInt.default(8 * MiB),
    /** Backlog level at which a waiting sender resumes and reading resumes. */
    send_low_water_bytes: nonNegativeInt.default(2 * MiB),
    /** Backlog past which the client is closed 1013 at once (it asked for more than it reads). */
    send_hard_limit_bytes: positiveInt.default(32 * MiB),
    /** A client whose backlog stays above the high watermark this long is closed 1013. */
    client_stall_timeout_seconds: z.number().positive().default(20),
    /** WebSocket ping interval; a peer that misses a pong by the next ping is terminated. 0 = off. */
    heartbeat_interval_seconds: z.number().min(0).default(15),
    /** New WebSocket connections per client network (see docs/operations.md) per minute; 0 = unlimited. */
    connections_per_minute_per_ip: nonNegativeInt.default(0),
    /** A connection must send its session_init_v2 this soon after the upgrade. */
    init_timeout_seconds: z.number().positive().default(10),
    /** Connections that have not sent their init yet, at most; counted apart from sessions. */
    max_pending_inits: positiveInt.default(64),
    /** Bytes of opening frames being received or parsed at once, over all connections. */
    init_bytes_in_flight: positiveInt.default(128 * MiB),
    /** Open TCP connections at most (HTTP, upgrades and sessions); further ones are dropped at accept. */
    max_connections: positiveInt.default(1024),
    /** An HTTP request (upgrades included) must deliver its headers this soon. */
    http_headers_timeout_seconds: z.number().positive().default(10),
    /** An HTTP request must be complete this soon. */
    http_request_timeout_seconds: z.number().positive().default(30),
    /** Initial-image bytes held in temp files at once, over all sessions. */
    max_temp_bytes: positiveInt.default(1024 * MiB),
    /**
     * Bytes of states kept behind resume tokens, over all of them (serialised size); past
     * it the least recently written are dropped first, so ended sessions cannot pile up.
     */
    max_resume_bytes: positiveInt.default(256 * MiB),
  })
  .prefault({});

const AuthSection = z
  .strictObject({
    /** Accepted API keys (`Authorization: Bearer KEY` or `?token=KEY`). Empty = no auth. Env LIVEGEN_API_KEYS adds more. */
    api_keys: z.array(z.string().min(16, 'API keys must be at least 16 characters')).default([]),
    /** Origins allowed to open a WebSocket (exact match, e.g. https://app.example.com). Empty = any. */
    allowed_origins: z.array(z.string().min(1)).default([]),
    /** Require a key for /status and /metrics too (health routes stay open). */
    protect_status: z.boolean().default(false),
    /** Concurrent sessions per API key; 0 = unlimited. */
    max_sessions_per_key: nonNegativeInt.default(0),
  })
  .prefault({});

const SamplingSection = z
  .strictObject({
    width: evenPositiveInt.default(640),
    height: evenPositiveInt.default(352),
    fps: positiveInt.max(120).default(24),
    num_frames: positiveInt.max(10_000).default(121),
    num_inference_steps: positiveInt.max(1000).default(8),
    guidance_scale: z.number().finite().default(1),
    seed: nonNegativeInt.default(0),
    negative_prompt: z.string().default(''),
  })
  .prefault({});

const DefaultRequestSection = z
  .strictObject({
    sampling: SamplingSection,
  })
  .prefault({});

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name');
const nameLike = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1 to 64 letters, digits, dots, dashes or underscores');

/** FastVideo's built-in providers (its `streaming.prompt.provider` values): endpoint and key variable. */
export const KNOWN_LLM_PROVIDERS: Readonly<Record<string, { base_url: string; api_key_env: string }>> = {
  cerebras: { base_url: 'https://api.cerebras.ai/v1', api_key_env: 'CEREBRAS_API_KEY' },
  groq: { base_url: 'https://api.groq.com/openai/v1', api_key_env: 'GROQ_API_KEY' },
};

const LlmProviderEntry = z.strictObject({
  /** Names it in metrics, logs and /status. */
  name: nameLike,
  /** An OpenAI-compatible API base, up to the version: `{base_url}/chat/completions` is called. */
  base_url: z.string().regex(/^https?:\/\/[^\s@]+$/, 'must be an http:// or https:// URL without credentials'),
  /** Default: streaming.prompt.model. */
  model: z.string().min(1).optional(),
  /** The environment variable holding its API key (keys never go in the file). Unset: no key sent. */
  api_key_env: envName.optional(),
  /** Longest single attempt; the operation's own timeout bounds it too. */
  timeout_ms: positiveInt.optional(),
});

/**
 * FastVideo's `streaming.prompt` (enabled, provider, model, timeout_ms, system_prompt_dir)
 * plus livegen's providers list, strategy and per-operation timeouts.
 */
const PromptSection = z
  .strictObject({
    enabled: z.boolean().default(false),
    /** FastVideo: `cerebras` or `groq`. With `providers`, the name of the entry asked first. */
    provider: nameLike.optional(),
    model: z.string().min(1).default('gpt-oss-120b'),
    /** Enhancement's deadline (FastVideo's request timeout); past it the raw prompt is generated. */
    timeout_ms: positiveInt.default(20_000),
    system_prompt_dir: z.string().min(1).nullable().optional(),
    providers: z.array(LlmProviderEntry).default([]),
    strategy: z.enum(['fallback', 'race']).default('fallback'),
    /** Auto-extension's deadline; past it the last prompt is generated again. */
    auto_extension_timeout_ms: positiveInt.default(1800),
    rewrite_timeout_ms: positiveInt.default(20_000),
    temperature: z.number().min(0).max(2).default(0.7),
    max_tokens: positiveInt.max(65_536).default(1024),
    /** Earlier prompts the LLM sees as the story so far. */
    history_prompts: positiveInt.max(64).default(8),
  })
  .prefault({});

/** FastVideo's `streaming.safety` (enabled, classifier_path) plus a blocklist and the decision's knobs. */
const SafetySection = z
  .strictObject({
    enabled: z.boolean().default(false),
    classifier_path: z.string().min(1).nullable().optional(),
    blocklist_path: z.string().min(1).nullable().optional(),
    block_threshold: z.number().min(0).max(1).default(0.5),
    unsafe_labels: z.array(z.string().min(1)).min(1).default(['unsafe']),
  })
  .prefault({});

const StreamingSection = z
  .strictObject({
    generation_segment_cap: nonNegativeInt.default(6),
    session_timeout_seconds: z.number().positive().default(300),
    stream_mode: z.enum(STREAM_MODES).default('av_fmp4'),
    /** Registered sessions at most (connected, queued or active). */
    max_sessions: positiveInt.default(256),
    /** Sessions waiting for a worker at most; past it a session is rejected. */
    max_queue: nonNegativeInt.default(128),
    /**
     * Longest delay before a waiter hears that only the queue depth changed (someone
     * joined behind it); position changes are sent at once. 0 = at once too.
     */
    queue_depth_update_ms: nonNegativeInt.default(1000),
    /** Longest wait for a worker before `gpu_unavailable`. */
    queue_timeout_seconds: z.number().positive().default(120),
    /** Segment requests a session may have waiting while one runs or while paused. */
    max_pending_requests: positiveInt.default(8),
    /** How often the reaper looks for idle sessions. */
    reaper_interval_ms: positiveInt.default(1000),
    /** When set, an init naming another preset gets `preset_mismatch`. */
    preset: z.string().min(1).optional(),
    /**
     * How long the state behind a `gpu_assigned.resume_token` is kept after the session's
     * last segment (or its end): a new session can continue the story with the token
     * within it. 0 = no resume tokens.
     */
    resume_ttl_seconds: nonNegativeInt.default(600),
    prompt: PromptSection,
    safety: SafetySection,
  })
  .prefault({});

const PoolSection = z
  .strictObject({
    workers: positiveInt.max(256).default(1),
    /** GPU id of each worker (→ CUDA_VISIBLE_DEVICES and `gpu_assigned.gpu_id`); default 0..workers-1. */
    gpu_ids: z.array(nonNegativeInt).min(1).optional(),
  })
  .prefault({});

const SyntheticSection = z
  .strictObject({
    pace: z.enum(['fast', 'realtime']).default('realtime'),
    step_ms: nonNegativeInt.default(25),
    audio: z.boolean().default(true),
    audio_sample_rate: positiveInt.default(48000),
    /** Render frames in a worker thread per worker slot, off the event loop (false: on it, as a library would). */
    thread: z.boolean().default(true),
  })
  .prefault({});

const WorkerSection = z
  .strictObject({
    /** Program to run per worker; default: the synthetic worker (`workers/synthetic/main.ts`). */
    command: z.string().min(1).optional(),
    args: z.array(z.string()).default([]),
    /** Extra environment; `{gpu_id}` in values and args is replaced by the worker's GPU id. */
    env: z.record(z.string(), z.string()).default({}),
    cwd: z.string().min(1).optional(),
    start_timeout_seconds: z.number().positive().default(600),
    warmup: z.boolean().default(true),
    warmup_timeout_seconds: z.number().positive().default(600),
    progress_timeout_seconds: z.number().positive().default(120),
    cancel_timeout_ms: positiveInt.default(500),
    restart_backoff_ms: positiveInt.default(250),
    restart_backoff_max_ms: positiveInt.default(30_000),
    shutdown_grace_ms: nonNegativeInt.default(5000),
  })
  .prefault({});

const GeneratorSection = z
  .strictObject({
    /** `synthetic`: in-process; `worker`: one child process per GPU speaking docs/worker-protocol.md. */
    kind: z.enum(['synthetic', 'worker']).default('synthetic'),
    model_id: z.string().min(1).optional(),
    synthetic: SyntheticSection,
    worker: WorkerSection,
  })
  .prefault({});

const MediaSection = z
  .strictObject({
    fragment_duration_ms: positiveInt.min(20).max(10_000).default(100),
    x264_preset: z
      .enum(['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow'])
      .default('ultrafast'),
    crf: z.number().min(0).max(51).default(23),
    max_bitrate_kbps: positiveInt.default(4000),
    ffmpeg_path: z.string().min(1).default('ffmpeg'),
  })
  .prefault({});

const LoggingSection = z
  .strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    session_log_dir: z.string().min(1).optional(),
    /** Bytes one session's event log may grow to; then it records that it stopped. */
    session_log_max_bytes: positiveInt.default(MiB),
  })
  .prefault({});

const ClusterSection = z
  .strictObject({
    /** The Redis every router and replica of the cluster shares; env LIVEGEN_REDIS_URL overrides it (keep passwords there). */
    redis_url: z.string().regex(/^rediss?:\/\/\S+$/, 'must look like redis://host:port or rediss://host:port'),
    /** This process's name in the cluster (default: hostname-pid); unique per replica and per router. */
    id: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1 to 64 letters, digits, dots, dashes or underscores')
      .optional(),
    /** Base URL routers use to reach this replica (default: http://<host>:<port> it listens on). */
    advertise_url: z
      .string()
      .regex(/^https?:\/\/\S+$/, 'must be an http:// or https:// URL')
      .optional(),
    /** Prefix of every Redis key, so one Redis can hold several clusters. */
    namespace: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1 to 64 letters, digits, dots, dashes or underscores')
      .default('livegen'),
    /** How often a replica or router renews its presence in Redis. */
    heartbeat_ms: positiveInt.min(100).default(1000),
    /** A replica or router whose presence was not renewed this long is gone (its waiters and holds go with it). */
    presence_ttl_ms: positiveInt.min(300).default(3000),
  })
  .optional();

export const ServeConfigSchema = z
  .strictObject({
    server: ServerSection,
    default_request: DefaultRequestSection,
    streaming: StreamingSection,
    pool: PoolSection,
    generator: GeneratorSection,
    media: MediaSection,
    logging: LoggingSection,
    limits: LimitsSection,
    auth: AuthSection,
    cluster: ClusterSection,
  })
  .superRefine((config, ctx) => {
    const prompt = config.streaming.prompt;
    const names = prompt.providers.map((p) => p.name);
    names.forEach((name, i) => {
      if (names.indexOf(name) !== i) ctx.addIssue({ code: 'custom', path: ['streaming', 'prompt', 'providers', i, 'name'], message: `${JSON.stringify(name)} is listed twice` });
    });
    if (prompt.provider !== undefined) {
      const known = prompt.providers.length > 0 ? names : Object.keys(KNOWN_LLM_PROVIDERS);
      if (!known.includes(prompt.provider)) {
        ctx.addIssue({
          code: 'custom',
          path: ['streaming', 'prompt', 'provider'],
          message: `${JSON.stringify(prompt.provider)} is not ${prompt.providers.length > 0 ? 'a name in streaming.prompt.providers' : 'a known provider'} (one of ${known.join(', ')}${prompt.providers.length > 0 ? '' : '; list others under streaming.prompt.providers'})`,
        });
      }
    }
    const cluster = config.cluster;
    if (cluster && cluster.presence_ttl_ms < 2 * cluster.heartbeat_ms) {
      ctx.addIssue({ code: 'custom', path: ['cluster', 'presence_ttl_ms'], message: `must be at least twice cluster.heartbeat_ms (${2 * cluster.heartbeat_ms})` });
    }
    const limits = config.limits;
    if (limits.send_low_water_bytes >= limits.send_high_water_bytes) {
      ctx.addIssue({ code: 'custom', path: ['limits', 'send_low_water_bytes'], message: 'must be below limits.send_high_water_bytes' });
    }
    // A snapshot reply carries the state twice; it must fit between the watermark and the ceiling.
    const largestReply = 2 * limits.max_continuation_state_bytes + MiB;
    if (limits.send_hard_limit_bytes < limits.send_high_water_bytes + largestReply) {
      ctx.addIssue({
        code: 'custom',
        path: ['limits', 'send_hard_limit_bytes'],
        message: `must be at least send_high_water_bytes + 2 x max_continuation_state_bytes + 1 MiB (${limits.send_high_water_bytes + largestReply})`,
      });
    }
    const ids = config.pool.gpu_ids;
    if (ids && ids.length !== config.pool.workers) {
      ctx.addIssue({ code: 'custom', path: ['pool', 'gpu_ids'], message: `lists ${ids.length} ids for ${config.pool.workers} workers` });
    }
    if (ids && new Set(ids).size !== ids.length) {
      ctx.addIssue({ code: 'custom', path: ['pool', 'gpu_ids'], message: 'ids must be distinct' });
    }
  });

export type ServeConfig = z.infer<typeof ServeConfigSchema>;
export type ServeConfigInput = z.input<typeof ServeConfigSchema>;
export type SamplingConfig = ServeConfig['default_request']['sampling'];
export type ClusterConfig = NonNullable<ServeConfig['cluster']>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function describe(issue: z.core.$ZodIssue): string {
  const path = issue.path.map(String).join('.') || '(root)';
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => `${path === '(root)' ? k : `${path}.${k}`}: unknown field`).join('; ');
  }
  if (issue.code === 'invalid_type') {
    const got = (issue as { input?: unknown }).input;
    return `${path}: expected ${issue.expected}${got === undefined ? '' : `, got ${JSON.stringify(got)}`}`;
  }
  if (issue.code === 'invalid_value') return `${path}: expected one of ${issue.values.join(', ')}`;
  return `${path}: ${issue.message}`;
}

/** Validates a config object; throws `ConfigError` naming every bad field. */
export function parseConfig(input: unknown, source = 'config'): ServeConfig {
  const result = ServeConfigSchema.safeParse(input ?? {}, { reportInput: true });
  if (!result.success) {
    throw new ConfigError(`invalid ${source}: ${result.error.issues.map(describe).join('; ')}`);
  }
  return result.data;
}

/** Reads and validates a YAML config file. */
export function loadConfigFile(path: string): ServeConfig {
  return parseConfig(readConfigInput(path), `config file ${path}`);
}

/** Reads a YAML config file as unvalidated input (a mapping), for merging flags over it. */
export function readConfigInput(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  if (value === null || value === undefined) return {};
  if (!isMapping(value)) throw new ConfigError(`config file ${path}: expected a mapping at the top level`);
  return value;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** True when a patch value sets anything (undefined leaves and empty mappings set nothing). */
function setsSomething(value: unknown): boolean {
  if (value === undefined) return false;
  return isMapping(value) ? Object.values(value).some(setsSomething) : true;
}

/**
 * Deep-merges the set leaves of `patch` into a config input (for CLI flags and env
 * overrides). A section the file set to a non-mapping is left as it is, so validation
 * still reports it instead of a flag silently replacing it.
 */
export function mergeConfigInput(base: unknown, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = isMapping(base) ? { ...base } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (!setsSomething(value)) continue;
    const current = out[key];
    if (isMapping(value) && current !== undefined && !isMapping(current)) continue;
    out[key] = isMapping(value) ? mergeConfigInput(current, value) : value;
  }
  return out;
}
