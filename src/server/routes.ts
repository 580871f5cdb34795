import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WorkerPool } from '../pool/index.js';
import type { PromptLayerStatus } from '../prompts/index.js';
import type { ServerMetrics } from './metrics.js';

/** Answers one HTTP request, or returns false when no route matches. */
export type Route = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

const SERVICE = 'livegen';

/** What the HTTP routes report, read at request time. */
export interface ServerStatus {
  /** Sessions whose init arrived. */
  sessions: number;
  /** Connections that have not sent their init yet. */
  pendingInits: number;
  queueDepth: number;
  pool: WorkerPool;
  /** The server's default stream mode (config `streaming.stream_mode`). */
  streamMode: string;
  shuttingDown: boolean;
  /** The prompt layer: LLM providers (never their keys) and the safety filter. */
  prompts: () => PromptLayerStatus;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

function readiness(status: ServerStatus) {
  const { pool } = status;
  const ready = pool.ready;
  return {
    status: ready > 0 ? 'ready' : 'warming',
    service: SERVICE,
    ready_gpu_workers: ready,
    total_gpus: pool.total,
    available_gpus: pool.available,
    warmup_successful_gpus: Object.values(pool.status()).filter((w) => w.warmup_success).length,
    warmup_failed_gpus: Object.values(pool.status()).filter((w) => w.warmup_enabled && !w.warmup_success && w.warmup_error).length,
    queue_size: status.queueDepth,
    ts: new Date().toISOString(),
  };
}

/** The HTTP routes of PROTOCOL.md "Endpoints". */
export function buildRoutes(current: () => ServerStatus, metrics: ServerMetrics): Map<string, Route> {
  return new Map<string, Route>([
    [
      '/health',
      (_req, res) =>
        sendJson(res, 200, {
          status: 'ok',
          sessions: current().sessions,
          pending_inits: current().pendingInits,
          stream_mode: current().streamMode,
          service: SERVICE,
          ts: new Date().toISOString(),
        }),
    ],
    ['/healthz', (_req, res) => sendJson(res, 200, { status: 'ok', service: SERVICE, ts: new Date().toISOString() })],
    [
      '/readyz',
      (_req, res) => {
        const status = current();
        const body: ReturnType<typeof readiness> & { detail?: string } = readiness(status);
        if (status.shuttingDown) body.status = 'warming';
        // Additive: the reason in the field Dreamverse's app (FastAPI's error shape) shows.
        if (body.status !== 'ready') body.detail = status.shuttingDown ? 'The server is shutting down.' : 'No ready GPU worker processes.';
        sendJson(res, body.status === 'ready' ? 200 : 503, body);
      },
    ],
    [
      '/status',
      (_req, res) => {
        const { pool, queueDepth, prompts } = current();
        const gpuStatus = pool.status();
        sendJson(res, 200, {
          total_gpus: pool.total,
          available_gpus: pool.available,
          queue_size: queueDepth,
          warmup_enabled: Object.values(gpuStatus).some((w) => w.warmup_enabled),
          warmup_successful_gpus: Object.values(gpuStatus).filter((w) => w.warmup_success).length,
          warmup_failed_gpus: Object.values(gpuStatus).filter((w) => w.warmup_enabled && !w.warmup_success && w.warmup_error).length,
          gpu_status: gpuStatus,
          prompts: prompts(),
        });
      },
    ],
    [
      '/metrics',
      async (_req, res) => {
        const text = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(text);
      },
    ],
  ]);
}
