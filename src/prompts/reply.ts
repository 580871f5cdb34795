/**
 * What an LLM's reply text becomes: models wrap the prompt asked for in reasoning blocks,
 * code fences, JSON, labels ("Enhanced prompt:") and quotes. These functions take the
 * prompt out, or say the reply holds none (undefined), which the provider set counts as a
 * malformed reply.
 */

/** Longest prompt taken from a reply; longer ones are cut at a word boundary. */
export const MAX_PROMPT_CHARS = 2000;

/** One prompt (enhance, auto-extend). */
export function promptFromReply(text: string): string | undefined {
  const body = unwrap(text);
  if (body === undefined) return undefined;
  const json = parseJson(body);
  if (json !== undefined) {
    const fromJson = typeof json === 'string' ? json : isRecord(json) ? firstString(json, ['prompt', 'enhanced_prompt', 'next_prompt', 'text']) : undefined;
    return fromJson === undefined ? undefined : finish(fromJson);
  }
  return finish(body);
}

/** Several prompts (rewrite): a JSON array, `{prompts: [...]}`, or one per line. */
export function promptListFromReply(text: string): string[] | undefined {
  const body = unwrap(text);
  if (body === undefined) return undefined;
  const json = parseJson(body);
  let items: unknown[] | undefined;
  if (Array.isArray(json)) items = json;
  else if (isRecord(json) && Array.isArray(json.prompts)) items = json.prompts;
  else if (json === undefined) items = body.split(/\r?\n/).map((line) => line.replace(/^\s*(?:\d+[.)]|[-*•])\s+/, ''));
  if (!items) return undefined;
  const prompts = items
    .map((item) => (typeof item === 'string' ? item : isRecord(item) ? firstString(item, ['prompt', 'text']) : undefined))
    .map((item) => (item === undefined ? undefined : finish(item)))
    .filter((item): item is string => item !== undefined);
  return prompts.length > 0 ? prompts : undefined;
}

/** Reasoning blocks and code fences removed; undefined when nothing is left or the reasoning never ended. */
function unwrap(text: string): string | undefined {
  let body = text.replace(/<think>[\s\S]*?<\/think>/gi, '');
  if (/<think>/i.test(body)) return undefined; // cut off while still reasoning
  const fenced = /^\s*```[\w-]*\s*\n?([\s\S]*?)\n?```\s*$/.exec(body);
  if (fenced) body = fenced[1] ?? '';
  body = body.trim();
  return body === '' ? undefined : body;
}

function finish(prompt: string): string | undefined {
  let p = prompt
    .replace(/^\s*(?:\*\*)?(?:enhanced|improved|rewritten|next|new|final)?\s*prompt(?:\*\*)?\s*:\s*/i, '')
    .replace(/\s+/g, ' ')
    .trim();
  // Quotes around the whole prompt, once.
  const quoted = /^(["'“‘`])([\s\S]*)(["'”’`])$/.exec(p);
  if (quoted && quoted[2] !== undefined && !/["“”]/.test(quoted[2])) p = quoted[2].trim();
  if (p === '') return undefined;
  if (p.length > MAX_PROMPT_CHARS) {
    const cut = p.slice(0, MAX_PROMPT_CHARS);
    const space = cut.lastIndexOf(' ');
    p = (space > MAX_PROMPT_CHARS / 2 ? cut.slice(0, space) : cut).trim();
  }
  return p;
}

function parseJson(text: string): unknown {
  if (!/^[[{"]/.test(text)) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function firstString(record: Record<string, unknown>, keys: string[]): string | undefined {
  for (const key of keys) {
    const value = record[key];
    if (typeof value === 'string') return value;
  }
  return undefined;
}
