/**
 * The WebSocket endpoints, `/v1/stream` and the Dreamverse dialect's `/ws`: every upgrade request goes through here. It
 * refuses what it must (wrong path, shutting down, access control) with a plain HTTP
 * answer, hands accepted connections to a SessionDriver, pings every connection, and
 * keeps a budget on the bytes of opening frames being received at once.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { CloseCode, ErrorCode, errorMessage } from '../protocol/index.js';
import { SessionRejected } from '../session/index.js';
import type { AccessControl } from './access.js';
import { ClientConnection } from './connection.js';
import type { ServerMetrics } from './metrics.js';
import { DreamverseDriver } from './dreamverse-driver.js';
import { SessionDriver, type ContinuedStory } from './session-driver.js';
import type { SessionServices } from './session-services.js';
import { refuseUpgrade, remoteAddress, UpgradeSockets } from './upgrade.js';

export const STREAM_PATH = '/v1/stream';
/** FastVideo's Dreamverse dialect (docs/dreamverse.md), on the same session core. */
export const DREAMVERSE_PATH = '/ws';

export interface StreamEndpointOptions {
  /** Everything sessions need, except the init-byte hook the endpoint supplies itself. */
  services: Omit<SessionServices, 'initReceived'>;
  access: AccessControl;
  logger: Logger;
  metrics: ServerMetrics;
  /** WebSocket ping interval; 0 = no heartbeats. */
  heartbeatMs: number;
  /** Bytes of opening frames that may be in flight at once, over all connections. */
  initBytesInFlight: number;
  /** Largest frame `ws` accepts before a connection's own (lower) limit applies: the opening frame's. */
  maxFrameBytes: number;
  isShuttingDown(): boolean;
  /**
   * Where a session a cluster router moves here picks up its story (segment index and
   * media timeline), read from the upgrade request; undefined for ordinary clients.
   */
  continuedStory?: (req: IncomingMessage) => ContinuedStory | undefined;
}

/**
 * Opening frames in flight, by connection: the bytes each connection received before its
 * init arrived. A connection that would take the total past the budget is refused with
 * "try later" instead of being buffered, so many clients uploading large inits at once
 * cannot exhaust the server's memory.
 */
class InitByteBudget {
  private total = 0;
  private readonly byConnection = new Map<WebSocket, { socket: Duplex; bytes: number; onData: (chunk: Buffer) => void }>();

  constructor(private readonly limit: number) {}

  track(ws: WebSocket, socket: Duplex, onOver: () => void): void {
    const entry = {
      socket,
      bytes: 0,
      onData: (chunk: Buffer) => {
        // A listener removed during an emit still hears that emit: count only while tracked.
        if (this.byConnection.get(ws) !== entry) return;
        entry.bytes += chunk.length;
        this.total += chunk.length;
        if (this.total > this.limit) {
          this.release(ws);
          onOver();
        }
      },
    };
    this.byConnection.set(ws, entry);
    // Ahead of ws's own listener, so a chunk is counted before it is parsed.
    socket.prependListener('data', entry.onData);
  }

  /** The connection's opening frame arrived (or the connection is gone): its bytes stop counting. */
  release(ws: WebSocket): void {
    const entry = this.byConnection.get(ws);
    if (!entry) return;
    this.byConnection.delete(ws);
    this.total -= entry.bytes;
    entry.socket.off('data', entry.onData);
  }

  get bytes(): number {
    return this.total;
  }
}

export class StreamEndpoint {
  private readonly wss: WebSocketServer;
  private readonly upgrading = new UpgradeSockets();
  private readonly alive = new WeakMap<WebSocket, boolean>();
  /** The payload of the last ping each connection was sent: only a pong echoing it shows the peer read it. */
  private readonly pingTokens = new WeakMap<WebSocket, Buffer>();
  private readonly budget: InitByteBudget;
  private readonly services: SessionServices;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(private readonly options: StreamEndpointOptions) {
    // Pongs are sent by ClientConnection so they count in the connection's send budget.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: options.maxFrameBytes, perMessageDeflate: false, autoPong: false });
    this.budget = new InitByteBudget(options.initBytesInFlight);
    this.services = { ...options.services, initReceived: (ws) => this.budget.release(ws) };
    if (options.heartbeatMs > 0) this.startHeartbeats(options.heartbeatMs);
  }

  /** Bytes of opening frames in flight now. */
  get initBytesInFlight(): number {
    return this.budget.bytes;
  }

  /** Upgrade sockets not handed over yet, and refused ones still closing. */
  get upgradeSockets(): number {
    return this.upgrading.size;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const { logger, access } = this.options;
    this.upgrading.adopt(socket, (err) => logger.debug({ err, ip: remoteAddress(socket) }, 'upgrade socket error'));
    const path = (req.url ?? '/').split('?')[0];
    if (path !== STREAM_PATH && path !== DREAMVERSE_PATH) return refuseUpgrade(socket, 404, `no WebSocket endpoint at ${path}`);
    const dialect = path === DREAMVERSE_PATH ? 'dreamverse' : 'v1';
    if (this.options.isShuttingDown()) return refuseUpgrade(socket, 503, 'server is shutting down');
    access.checkUpgrade(req).then(
      (decision) => {
        if (socket.destroyed) return;
        if (this.options.isShuttingDown()) return refuseUpgrade(socket, 503, 'server is shutting down');
        if (!decision.ok) {
          logger.info({ status: decision.refusal.status, reason: decision.refusal.reason, ip: remoteAddress(socket) }, 'upgrade refused');
          const headers: Record<string, string> = decision.refusal.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {};
          return refuseUpgrade(socket, decision.refusal.status, decision.refusal.reason, headers);
        }
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          this.upgrading.release(socket);
          const story = dialect === 'v1' ? this.options.continuedStory?.(req) : undefined;
          this.accept(ws, socket, decision.keyId, dialect, story).catch((err: unknown) => {
            logger.error({ err }, 'cannot open a session');
            ws.terminate();
          });
        });
      },
      (err: unknown) => {
        logger.error({ err }, 'access check failed');
        refuseUpgrade(socket, 503, 'access control is unavailable; retry later');
      },
    );
  }

  /** Stops heartbeats and drops every connection and upgrade still open. */
  close(): void {
    clearInterval(this.heartbeat);
    for (const client of this.wss.clients) client.terminate();
    this.upgrading.destroyAll();
    this.wss.close();
  }

  private async accept(ws: WebSocket, socket: Duplex, keyId: string | undefined, dialect: 'v1' | 'dreamverse', story: ContinuedStory | undefined): Promise<void> {
    this.alive.set(ws, true);
    // A pong that does not echo our ping proves nothing: a client that reads nothing can send pongs.
    ws.on('pong', (data: Buffer) => {
      const token = this.pingTokens.get(ws);
      if (!token || token.equals(data)) this.alive.set(ws, true);
    });
    // Frames wait until the session listens; the opening frame's bytes count from the start.
    ws.pause();
    let driver: { overloaded(message: string): void } | undefined;
    this.budget.track(ws, socket, () => {
      if (driver) driver.overloaded('the server is receiving too many opening frames at once; retry later');
      else ws.terminate();
    });
    ws.once('close', () => this.budget.release(ws));
    let admitted: boolean;
    try {
      admitted = await this.options.access.openSession(keyId);
    } catch (err) {
      this.options.logger.error({ err }, 'session counter failed');
      admitted = false;
    }
    if (!admitted) {
      this.budget.release(ws);
      this.refuse(ws, 'this API key holds its maximum of concurrent sessions', CloseCode.POLICY_VIOLATION, 'session limit for this key');
      return;
    }
    if (ws.readyState !== ws.OPEN) {
      this.services.releaseKey(keyId);
      return;
    }
    try {
      driver = dialect === 'dreamverse' ? DreamverseDriver.open(this.services, ws, keyId) : SessionDriver.open(this.services, ws, keyId, story);
    } catch (err) {
      this.budget.release(ws);
      this.services.releaseKey(keyId);
      if (!(err instanceof SessionRejected)) throw err;
      this.refuse(ws, `server is full: ${err.message}`, CloseCode.TRY_AGAIN_LATER, 'server full');
      return;
    }
    ws.resume();
  }

  private refuse(ws: WebSocket, message: string, close: number, reason: string): void {
    ws.on('error', () => undefined);
    const { limits, hooks } = this.services.connection;
    const connection = new ClientConnection(ws, limits, hooks);
    connection.send(errorMessage(ErrorCode.SESSION_REJECTED, message, true));
    connection.close(close, reason);
    this.options.metrics.sessionRejected();
  }

  /**
   * Pings every connection each interval; one that has not answered the previous ping is
   * terminated (its session ends, its worker is freed). Judged only after the I/O that
   * piled up during an event-loop stall has been handled, and never on a tick that came
   * late, so a stall cannot make live peers look dead.
   */
  private startHeartbeats(intervalMs: number): void {
    let lastTick = performance.now();
    this.heartbeat = setInterval(() => {
      const now = performance.now();
      const late = now - lastTick > intervalMs * 1.5;
      lastTick = now;
      setImmediate(() => {
        for (const ws of this.wss.clients) {
          if (!late && !this.alive.get(ws)) {
            ws.terminate();
            continue;
          }
          this.alive.set(ws, false);
          const token = randomBytes(8);
          this.pingTokens.set(ws, token);
          ws.ping(token);
        }
      });
    }, intervalMs);
    this.heartbeat.unref();
  }
}
