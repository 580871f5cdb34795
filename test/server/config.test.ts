import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile, mergeConfigInput, parseConfig } from '../../src/server/index.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXAMPLE = join(ROOT, 'docs', 'serve.example.yaml');

/** The defaults exactly as docs/config.md states them. */
const DOCUMENTED_DEFAULTS = {
  server: { host: '127.0.0.1', port: 8000 , shutdown_grace_seconds: 30 },
  default_request: {
    sampling: {
      width: 640,
      height: 352,
      fps: 24,
      num_frames: 121,
      num_inference_steps: 8,
      guidance_scale: 1,
      seed: 0,
      negative_prompt: '',
    },
  },
  streaming: {
    generation_segment_cap: 6,
    session_timeout_seconds: 300,
    stream_mode: 'av_fmp4',
    max_sessions: 256,
    max_queue: 128,
    queue_depth_update_ms: 1000,
    queue_timeout_seconds: 120,
    max_pending_requests: 8,
    reaper_interval_ms: 1000,
    resume_ttl_seconds: 600,
    prompt: {
      enabled: false,
      model: 'gpt-oss-120b',
      timeout_ms: 20000,
      providers: [],
      strategy: 'fallback',
      auto_extension_timeout_ms: 1800,
      rewrite_timeout_ms: 20000,
      temperature: 0.7,
      max_tokens: 1024,
      history_prompts: 8,
    },
    safety: { enabled: false, block_threshold: 0.5, unsafe_labels: ['unsafe'] },
  },
  pool: { workers: 1 },
  generator: {
    kind: 'synthetic',
    synthetic: { pace: 'realtime', step_ms: 25, audio: true, audio_sample_rate: 48000, thread: true },
    worker: {
      args: [],
      env: {},
      start_timeout_seconds: 600,
      warmup: true,
      warmup_timeout_seconds: 600,
      progress_timeout_seconds: 120,
      cancel_timeout_ms: 500,
      restart_backoff_ms: 250,
      restart_backoff_max_ms: 30_000,
      shutdown_grace_ms: 5000,
    },
  },
  media: { fragment_duration_ms: 100, x264_preset: 'ultrafast', crf: 23, max_bitrate_kbps: 4000, ffmpeg_path: 'ffmpeg' },
  logging: { level: 'info', session_log_max_bytes: 1024 * 1024 },
  limits: {
    max_control_frame_bytes: 1024 * 1024,
    max_continuation_state_bytes: 8 * 1024 * 1024,
    send_high_water_bytes: 8 * 1024 * 1024,
    send_low_water_bytes: 2 * 1024 * 1024,
    send_hard_limit_bytes: 32 * 1024 * 1024,
    client_stall_timeout_seconds: 20,
    heartbeat_interval_seconds: 15,
    connections_per_minute_per_ip: 0,
    init_timeout_seconds: 10,
    max_pending_inits: 64,
    init_bytes_in_flight: 128 * 1024 * 1024,
    max_connections: 1024,
    http_headers_timeout_seconds: 10,
    http_request_timeout_seconds: 30,
    max_temp_bytes: 1024 * 1024 * 1024,
    max_resume_bytes: 256 * 1024 * 1024,
  },
  auth: { api_keys: [], allowed_origins: [], protect_status: false, max_sessions_per_key: 0 },
};

const tmp = mkdtempSync(join(tmpdir(), 'livegen-config-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function writeTemp(name: string, text: string): string {
  const path = join(tmp, name);
  writeFileSync(path, text);
  return path;
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

describe('defaults', () => {
  it('parseConfig of nothing gives exactly the documented defaults', () => {
    expect(parseConfig({})).toStrictEqual(DOCUMENTED_DEFAULTS);
    expect(parseConfig(undefined)).toStrictEqual(DOCUMENTED_DEFAULTS);
    expect(parseConfig(null)).toStrictEqual(DOCUMENTED_DEFAULTS);
  });

  it('leaves the optional fields without a default unset', () => {
    const config = parseConfig({});
    expect(config.streaming.preset).toBeUndefined();
    expect(config.generator.model_id).toBeUndefined();
    expect(config.logging.session_log_dir).toBeUndefined();
  });

  it('fills the rest of a section when only some fields are given', () => {
    const config = parseConfig({ streaming: { generation_segment_cap: 2 }, default_request: {} });
    expect(config.streaming).toStrictEqual({ ...DOCUMENTED_DEFAULTS.streaming, generation_segment_cap: 2 });
    expect(config.default_request).toStrictEqual(DOCUMENTED_DEFAULTS.default_request);
  });
});

describe('docs/serve.example.yaml', () => {
  it('loads with loadConfigFile and equals the defaults', () => {
    expect(loadConfigFile(EXAMPLE)).toStrictEqual(parseConfig({}));
  });

  it('is the example shown inline in docs/config.md', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'config.md'), 'utf8');
    expect(doc).toContain(readFileSync(EXAMPLE, 'utf8'));
  });

  it('names every schema field (commented out only when it has no default)', () => {
    const text = readFileSync(EXAMPLE, 'utf8');
    const leaves = (value: object, prefix = ''): string[] =>
      Object.entries(value).flatMap(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) ? leaves(v as object, `${prefix}${k}.`) : [`${prefix}${k}`]));
    for (const field of [...leaves(DOCUMENTED_DEFAULTS), 'streaming.preset', 'generator.model_id', 'logging.session_log_dir']) {
      const name = field.split('.').pop() as string;
      expect(text, field).toMatch(new RegExp(`^\\s*(# )?${name}:`, 'm'));
    }
  });
});

describe('unknown fields', () => {
  it.each([
    [{ bogus: 1 }, 'bogus: unknown field'],
    [{ streaming: { bogus: true } }, 'streaming.bogus: unknown field'],
    [{ default_request: { sampling: { widht: 640 } } }, 'default_request.sampling.widht: unknown field'],
    [{ generator: { synthetic: { speed: 'fast' } } }, 'generator.synthetic.speed: unknown field'],
    [{ streaming: { warmup: { enabled: true } } }, 'streaming.warmup: unknown field'],
  ])('%j fails naming the dotted field', (input, message) => {
    expect(errorOf(() => parseConfig(input)).message).toContain(message);
  });

  it('reports every bad field at once', () => {
    const message = errorOf(() => parseConfig({ a: 1, server: { b: 2, port: 'x' } })).message;
    expect(message).toContain('a: unknown field');
    expect(message).toContain('server.b: unknown field');
    expect(message).toContain('server.port:');
  });
});

describe('invalid values', () => {
  it.each([
    ['server.port', { server: { port: '8000' } }, /server\.port: expected number, got "8000"/],
    ['server.port', { server: { port: 70000 } }, /server\.port: /],
    ['server.port', { server: { port: -1 } }, /server\.port: /],
    ['server.port', { server: { port: 80.5 } }, /server\.port: /],
    ['server.host', { server: { host: '' } }, /server\.host: /],
    ['pool.workers', { pool: { workers: 0 } }, /pool\.workers: /],
    ['pool.workers', { pool: { workers: 257 } }, /pool\.workers: /],
    ['pool.workers', { pool: { workers: 'two' } }, /pool\.workers: expected number, got "two"/],
    ['default_request.sampling.fps', { default_request: { sampling: { fps: 121 } } }, /default_request\.sampling\.fps: /],
    ['default_request.sampling.seed', { default_request: { sampling: { seed: -1 } } }, /default_request\.sampling\.seed: /],
    ['default_request.sampling.guidance_scale', { default_request: { sampling: { guidance_scale: Infinity } } }, /default_request\.sampling\.guidance_scale: /],
    ['streaming.stream_mode', { streaming: { stream_mode: 'webm' } }, /streaming\.stream_mode: expected one of av_fmp4, legacy_jpeg/],
    ['streaming.session_timeout_seconds', { streaming: { session_timeout_seconds: 0 } }, /streaming\.session_timeout_seconds: /],
    ['streaming.generation_segment_cap', { streaming: { generation_segment_cap: -1 } }, /streaming\.generation_segment_cap: /],
    ['streaming.preset', { streaming: { preset: '' } }, /streaming\.preset: /],
    ['generator.kind', { generator: { kind: 'ltx2' } }, /generator\.kind: expected one of synthetic/],
    ['generator.synthetic.pace', { generator: { synthetic: { pace: 'slow' } } }, /generator\.synthetic\.pace: expected one of fast, realtime/],
    ['generator.synthetic.audio', { generator: { synthetic: { audio: 'yes' } } }, /generator\.synthetic\.audio: expected boolean/],
    ['media.fragment_duration_ms', { media: { fragment_duration_ms: 10 } }, /media\.fragment_duration_ms: /],
    ['media.crf', { media: { crf: 52 } }, /media\.crf: /],
    ['media.x264_preset', { media: { x264_preset: 'turbo' } }, /media\.x264_preset: expected one of ultrafast/],
    ['logging.level', { logging: { level: 'verbose' } }, /logging\.level: expected one of /],
    ['streaming (a section that is not a mapping)', { streaming: 5 }, /streaming: expected object/],
  ])('%s: %j fails naming the field', (_field, input, pattern) => {
    expect(errorOf(() => parseConfig(input)).message).toMatch(pattern);
  });

  it('rejects an odd width or height', () => {
    expect(errorOf(() => parseConfig({ default_request: { sampling: { width: 641 } } })).message).toBe(
      'invalid config: default_request.sampling.width: must be even (yuv420p video)',
    );
    expect(errorOf(() => parseConfig({ default_request: { sampling: { height: 351 } } })).message).toContain(
      'default_request.sampling.height: must be even',
    );
    expect(parseConfig({ default_request: { sampling: { width: 642, height: 2 } } }).default_request.sampling).toMatchObject({ width: 642, height: 2 });
  });

  it('accepts the range boundaries', () => {
    const config = parseConfig({
      server: { port: 0 },
      pool: { workers: 256 },
      streaming: { generation_segment_cap: 0, max_queue: 0, session_timeout_seconds: 0.25 },
      media: { fragment_duration_ms: 20, crf: 0 },
      default_request: { sampling: { fps: 120, num_frames: 10_000, num_inference_steps: 1000 } },
    });
    expect(config.server.port).toBe(0);
    expect(config.streaming.session_timeout_seconds).toBe(0.25);
  });

  it('names the source in the message', () => {
    expect(errorOf(() => parseConfig({ bogus: 1 }, 'config file x.yaml')).message).toBe('invalid config file x.yaml: bogus: unknown field');
  });
});

describe('loadConfigFile', () => {
  it('reads a YAML file', () => {
    const path = writeTemp('ok.yaml', 'server:\n  port: 9100\nstreaming:\n  generation_segment_cap: 3\n');
    const config = loadConfigFile(path);
    expect(config.server).toStrictEqual({ host: '127.0.0.1', port: 9100, shutdown_grace_seconds: 30 });
    expect(config.streaming.generation_segment_cap).toBe(3);
  });

  it('treats an empty file as no configuration', () => {
    expect(loadConfigFile(writeTemp('empty.yaml', ''))).toStrictEqual(parseConfig({}));
  });

  it('gives a ConfigError naming a missing file', () => {
    const path = join(tmp, 'missing.yaml');
    const err = errorOf(() => loadConfigFile(path));
    expect(err.message).toContain(`cannot read config file ${path}`);
  });

  it('gives a ConfigError naming a file that is not valid YAML', () => {
    const path = writeTemp('broken.yaml', 'server:\n  port: [1, 2\n');
    const err = errorOf(() => loadConfigFile(path));
    expect(err.message).toContain(`config file ${path} is not valid YAML`);
  });

  it('gives a ConfigError naming a file whose top level is not a mapping', () => {
    const path = writeTemp('list.yaml', '- server\n- port\n');
    expect(errorOf(() => loadConfigFile(path)).message).toContain(`config file ${path}: expected a mapping`);
  });

  it('names the file and the field of an invalid value', () => {
    const path = writeTemp('unknown.yaml', 'streaming:\n  bogus: 1\n');
    expect(errorOf(() => loadConfigFile(path)).message).toBe(`invalid config file ${path}: streaming.bogus: unknown field`);
  });
});

describe('mergeConfigInput', () => {
  it('overrides nested fields without dropping their siblings', () => {
    const base = { server: { host: '0.0.0.0', port: 1 }, default_request: { sampling: { width: 320, height: 180 } } };
    const merged = mergeConfigInput(base, { server: { port: 2 }, default_request: { sampling: { height: 240 } } });
    expect(merged).toStrictEqual({ server: { host: '0.0.0.0', port: 2 }, default_request: { sampling: { width: 320, height: 240 } } });
  });

  it('skips undefined values so an unset flag keeps the file value', () => {
    const merged = mergeConfigInput({ server: { host: 'h', port: 1 } }, { server: { host: undefined, port: 2 }, pool: undefined });
    expect(merged).toStrictEqual({ server: { host: 'h', port: 2 } });
  });

  it('adds sections the base lacks and does not modify its inputs', () => {
    const base = { server: { port: 1 } };
    const patch = { pool: { workers: 3 } };
    const merged = mergeConfigInput(base, patch);
    expect(merged).toStrictEqual({ server: { port: 1 }, pool: { workers: 3 } });
    expect(base).toStrictEqual({ server: { port: 1 } });
    expect(patch).toStrictEqual({ pool: { workers: 3 } });
  });

  it('replaces arrays and scalars whole', () => {
    expect(mergeConfigInput({ a: [1, 2], b: 1 }, { a: [3], b: 2 })).toStrictEqual({ a: [3], b: 2 });
  });

  it('treats a missing base as empty', () => {
    expect(mergeConfigInput(undefined, { server: { port: 5 } })).toStrictEqual({ server: { port: 5 } });
  });

  it('merged input parses to the merged config', () => {
    const config = parseConfig(mergeConfigInput({ server: { host: '0.0.0.0' } }, { server: { port: 0 } }));
    expect(config.server).toStrictEqual({ host: '0.0.0.0', port: 0, shutdown_grace_seconds: 30 });
  });
});
