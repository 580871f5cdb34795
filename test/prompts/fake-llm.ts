/**
 * A fake OpenAI-compatible chat-completions server for tests: real HTTP on loopback.
 * Each call is answered by the test's `reply` function (status, body, delay), and every
 * call is recorded with what it asked and whether the caller hung up before the answer.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeCall {
  path: string;
  authorization: string | undefined;
  body: { model?: string; messages?: { role: string; content: string }[]; max_tokens?: number; temperature?: number };
  /** The user message's text. */
  user: string;
  system: string;
  receivedAt: number;
  /** When the answer was written (undefined: never, e.g. the caller hung up first). */
  answeredAt?: number;
  /** The caller closed the connection before the answer was written. */
  aborted: boolean;
}

export interface FakeReply {
  status?: number;
  /** A string is sent as it is; anything else as JSON. Default: a completion of `content`. */
  body?: unknown;
  /** The completion's text, when `body` is not given. */
  content?: string;
  delayMs?: number;
  /** Held until this resolves (before the delay). */
  until?: Promise<void>;
}

export type ReplyFn = (call: FakeCall) => FakeReply;

export function completion(content: string, model = 'fake-model'): unknown {
  return { id: 'cmpl-test', object: 'chat.completion', model, choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] };
}

export class FakeLlm {
  readonly calls: FakeCall[] = [];
  private constructor(
    private readonly server: Server,
    public reply: ReplyFn,
  ) {}

  static async start(reply: ReplyFn = (call) => ({ content: `enhanced: ${call.user}` })): Promise<FakeLlm> {
    // The server answers through the instance made below, once it listens.
    const holder: { fake?: FakeLlm } = {};
    const server = createServer((req, res) => {
      void readBody(req).then(async (text) => {
        const body = safeJson(text);
        const messages = body.messages ?? [];
        const call: FakeCall = {
          path: req.url ?? '',
          authorization: req.headers.authorization,
          body,
          user: messages.find((m) => m.role === 'user')?.content ?? '',
          system: messages.find((m) => m.role === 'system')?.content ?? '',
          receivedAt: performance.now(),
          aborted: false,
        };
        holder.fake?.calls.push(call);
        res.on('close', () => {
          if (!res.writableFinished) call.aborted = true;
        });
        const r = holder.fake ? holder.fake.reply(call) : {};
        if (r.until) await r.until;
        if (r.delayMs) await new Promise((resolve) => setTimeout(resolve, r.delayMs));
        if (res.destroyed || call.aborted) return;
        const payload = r.body !== undefined ? r.body : completion(r.content ?? 'ok');
        const text2 = typeof payload === 'string' ? payload : JSON.stringify(payload);
        res.writeHead(r.status ?? 200, { 'content-type': 'application/json' });
        res.end(text2, () => (call.answeredAt = performance.now()));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    holder.fake = new FakeLlm(server, reply);
    return holder.fake;
  }

  /** The base URL a provider entry points at (`{baseUrl}/chat/completions` is called). */
  get baseUrl(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(''));
  });
}

function safeJson(text: string): FakeCall['body'] {
  try {
    return JSON.parse(text) as FakeCall['body'];
  } catch {
    return {};
  }
}
