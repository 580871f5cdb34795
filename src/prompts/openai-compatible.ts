/**
 * A provider for any OpenAI-compatible `POST {base_url}/chat/completions` endpoint:
 * Cerebras, Groq, OpenAI, a local vLLM, llama.cpp or Ollama server.
 *
 * Plain `fetch` rather than the `openai` package: the call is one POST and one JSON
 * shape, and the prompt layer needs exact control of each attempt's deadline and abort
 * (a race cancels the losers, a client that leaves cancels everything), while the SDK adds
 * its own retries, timeouts and error classes that would have to be turned off or mapped.
 */
import { LlmError, type ChatReply, type ChatRequest, type LlmProvider } from './llm.js';

export interface OpenAiCompatibleOptions {
  /** Names it in metrics, logs and `/status`. */
  name: string;
  /** Base URL up to the API version, e.g. `https://api.groq.com/openai/v1`. */
  baseUrl: string;
  model: string;
  /** The key, read from the environment by the caller; undefined for servers that need none. */
  apiKey: string | undefined;
  /** The environment variable the key comes from, named in errors when it is missing. */
  apiKeyEnv: string | undefined;
  /** Extra request headers (never logged). */
  headers?: Record<string, string>;
}

/** Largest reply body read; a prompt is a few hundred bytes, anything near this is a broken server. */
const MAX_REPLY_BYTES = 1024 * 1024;

export class OpenAiCompatibleProvider implements LlmProvider {
  readonly name: string;
  readonly model: string;
  readonly endpoint: string;
  private readonly url: string;

  constructor(private readonly options: OpenAiCompatibleOptions) {
    this.name = options.name;
    this.model = options.model;
    this.url = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    const parsed = new URL(this.url);
    // Shown in /status: scheme, host and path only, never credentials or a query.
    this.endpoint = `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  }

  get credentials(): 'set' | 'missing' | 'none' {
    if (this.options.apiKey) return 'set';
    return this.options.apiKeyEnv ? 'missing' : 'none';
  }

  async complete(request: ChatRequest): Promise<ChatReply> {
    const { apiKey, apiKeyEnv } = this.options;
    if (apiKeyEnv && !apiKey) throw new LlmError('no_api_key', `no API key: the environment variable ${apiKeyEnv} is not set`, this.name);
    request.signal.throwIfAborted();
    // Whole milliseconds: a budget left over from a fallback chain is fractional.
    const deadline = AbortSignal.timeout(Math.max(1, Math.ceil(request.timeoutMs)));
    const signal = AbortSignal.any([request.signal, deadline]);
    const started = performance.now();
    const model = request.model ?? this.model;
    const failed = (err: unknown): LlmError => {
      if (err instanceof LlmError) return err;
      if (request.signal.aborted) return new LlmError('aborted', 'aborted: nobody waits for the answer any more', this.name);
      if (deadline.aborted) return new LlmError('timeout', `no answer within ${Math.round(request.timeoutMs)} ms`, this.name);
      return new LlmError('network', `cannot reach ${this.endpoint}: ${this.redact(describe(err))}`, this.name);
    };
    try {
      const response = await fetch(this.url, {
        method: 'POST',
        signal,
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
          ...this.options.headers,
        },
        body: JSON.stringify({
          model,
          messages: request.messages,
          max_tokens: request.maxTokens,
          temperature: request.temperature,
          stream: false,
        }),
      });
      const body = await readLimited(response, MAX_REPLY_BYTES, this.name);
      if (!response.ok) throw this.httpError(response.status, body);
      const content = contentOf(body);
      if (content === undefined) {
        throw new LlmError('malformed', `the reply is not a chat completion with text: ${this.redact(excerpt(body))}`, this.name, response.status);
      }
      return { content, provider: this.name, model, latencyMs: performance.now() - started };
    } catch (err) {
      throw failed(err);
    }
  }

  private httpError(status: number, body: string): LlmError {
    const detail = `HTTP ${status}: ${this.redact(excerpt(messageOf(body) ?? body))}`;
    if (status === 429) return new LlmError('rate_limited', detail, this.name, status);
    if (status === 408 || status >= 500) return new LlmError('server_error', detail, this.name, status);
    return new LlmError('client_error', detail, this.name, status);
  }

  /** A server that echoes the request must not put the key into our logs. */
  private redact(text: string): string {
    const key = this.options.apiKey;
    return key ? text.replaceAll(key, '[key]') : text;
  }
}

async function readLimited(response: Response, limit: number, provider: string): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      throw new LlmError('malformed', `the reply is larger than ${limit} bytes`, provider);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** `choices[0].message.content` when it is a non-empty string. */
function contentOf(body: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (!isRecord(parsed) || !Array.isArray(parsed.choices)) return undefined;
  const first: unknown = parsed.choices[0];
  if (!isRecord(first) || !isRecord(first.message)) return undefined;
  const content = first.message.content;
  return typeof content === 'string' && content.trim() !== '' ? content : undefined;
}

/** The `error.message` of an OpenAI-style error body, when there is one. */
function messageOf(body: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(body);
    if (isRecord(parsed) && isRecord(parsed.error) && typeof parsed.error.message === 'string') return parsed.error.message;
  } catch {
    // not JSON: the body itself is the detail
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function excerpt(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}…` : flat || '(empty body)';
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}
