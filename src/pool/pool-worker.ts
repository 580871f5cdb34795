import type { Generator } from '../generation/types.js';

/** Health of one worker as `/status` reports it (PROTOCOL.md `gpu_status` entries, less binding). */
export interface WorkerHealth {
  ready: boolean;
  process_alive: boolean;
  current_model_id: string | null;
  warmup_enabled: boolean;
  warmup_success: boolean;
  warmup_error: string | null;
  warmup_timings: Record<string, number>;
  restarts: number;
  pid: number | null;
}

/** One GPU's worth of generation capacity, whatever runs it. */
export interface PoolWorker {
  /** Worker id = GPU id, reported as `gpu_assigned.gpu_id`. */
  readonly id: number;
  /** Stable across restarts of whatever process backs it. */
  readonly generator: Generator;
  /** True when a new session may be bound now (up, warmed, not finishing a cancelled job). */
  readonly acceptsWork: boolean;
  health(): WorkerHealth;
  start(): void;
  stop(graceMs: number): Promise<void>;
  /** Called whenever `acceptsWork` may have changed. */
  onChange(listener: () => void): void;
}

/** An in-process generator (the embedded synthetic one): always ready. */
export class InProcessWorker implements PoolWorker {
  readonly acceptsWork = true;

  constructor(
    readonly id: number,
    readonly generator: Generator,
  ) {}

  health(): WorkerHealth {
    return {
      ready: true,
      process_alive: true,
      current_model_id: this.generator.modelId,
      warmup_enabled: false,
      warmup_success: false,
      warmup_error: null,
      warmup_timings: {},
      restarts: 0,
      pid: process.pid,
    };
  }

  start(): void {}

  async stop(): Promise<void> {
    await this.generator.close?.();
  }

  onChange(): void {}
}
