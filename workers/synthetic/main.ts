// The synthetic generator as a worker process: the same code path a real model takes
// (spawn, handshake, jobs over the stdio protocol), with no GPU. Options come from env:
//   LIVEGEN_SYNTHETIC_PACE=fast|realtime  LIVEGEN_SYNTHETIC_STEP_MS=N  LIVEGEN_SYNTHETIC_AUDIO=0|1
//   LIVEGEN_SYNTHETIC_LOAD_MS=N (simulated model load before ready)
import { SyntheticGenerator } from '../../src/generation/index.js';
import { runWorker } from '../../src/generation/worker/worker-runtime.js';

const env = process.env;
const pace = env.LIVEGEN_SYNTHETIC_PACE === 'realtime' ? 'realtime' : 'fast';
const generator = new SyntheticGenerator({
  pace,
  stepMs: env.LIVEGEN_SYNTHETIC_STEP_MS ? Number(env.LIVEGEN_SYNTHETIC_STEP_MS) : 0,
  audio: env.LIVEGEN_SYNTHETIC_AUDIO === '0' ? null : { sampleRate: 48000, channels: 1 },
  modelId: env.LIVEGEN_SYNTHETIC_MODEL_ID ?? 'livegen/synthetic-worker',
});

await runWorker({ generator, loadDelayMs: env.LIVEGEN_SYNTHETIC_LOAD_MS ? Number(env.LIVEGEN_SYNTHETIC_LOAD_MS) : 0 });
process.exit(0);
