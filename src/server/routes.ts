import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerContext } from './context.js';

/** Answers one HTTP request, or returns false when no route matches. */
export type Route = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

const SERVICE = 'livegen';

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

function readiness(ctx: ServerContext) {
  const ready = ctx.pool.ready;
  return {
    status: ready > 0 ? 'ready' : 'warming',
    service: SERVICE,
    ready_gpu_workers: ready,
    total_gpus: ctx.pool.total,
    available_gpus: ctx.pool.available,
    warmup_successful_gpus: Object.values(ctx.pool.status()).filter((w) => w.warmup_success).length,
    warmup_failed_gpus: Object.values(ctx.pool.status()).filter((w) => w.warmup_enabled && !w.warmup_success && w.warmup_error).length,
    queue_size: ctx.admission.queueDepth,
    ts: new Date().toISOString(),
  };
}

/** The HTTP routes of PROTOCOL.md "Endpoints". */
export function buildRoutes(ctx: ServerContext, isShuttingDown: () => boolean): Map<string, Route> {
  return new Map<string, Route>([
    [
      '/health',
      (_req, res) =>
        sendJson(res, 200, {
          status: 'ok',
          sessions: ctx.manager.size,
          stream_mode: ctx.config.streaming.stream_mode,
          service: SERVICE,
          ts: new Date().toISOString(),
        }),
    ],
    ['/healthz', (_req, res) => sendJson(res, 200, { status: 'ok', service: SERVICE, ts: new Date().toISOString() })],
    [
      '/readyz',
      (_req, res) => {
        const body = readiness(ctx);
        if (isShuttingDown()) body.status = 'warming';
        sendJson(res, body.status === 'ready' ? 200 : 503, body);
      },
    ],
    [
      '/status',
      (_req, res) => {
        const gpuStatus = ctx.pool.status();
        sendJson(res, 200, {
          total_gpus: ctx.pool.total,
          available_gpus: ctx.pool.available,
          queue_size: ctx.admission.queueDepth,
          warmup_enabled: Object.values(gpuStatus).some((w) => w.warmup_enabled),
          warmup_successful_gpus: Object.values(gpuStatus).filter((w) => w.warmup_success).length,
          warmup_failed_gpus: Object.values(gpuStatus).filter((w) => w.warmup_enabled && !w.warmup_success && w.warmup_error).length,
          gpu_status: gpuStatus,
        });
      },
    ],
    [
      '/metrics',
      async (_req, res) => {
        const text = await ctx.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType });
        res.end(text);
      },
    ],
  ]);
}
