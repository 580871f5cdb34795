import type { Notice, PlayerError, SegmentInfo } from './model.js';

/** Every element the page uses, found once by id. */
export function findElements() {
  const byId = <T extends HTMLElement>(id: string): T => {
    const el = document.getElementById(id);
    if (!el) throw new Error(`the page has no #${id}`);
    return el as T;
  };
  return {
    status: byId<HTMLElement>('status'),
    notice: byId<HTMLElement>('notice'),
    continueButton: byId<HTMLButtonElement>('continue'),
    stage: byId<HTMLElement>('stage'),
    video: byId<HTMLVideoElement>('video'),
    queue: byId<HTMLElement>('queue-position'),
    segmentCount: byId<HTMLElement>('segment-count'),
    ttff: byId<HTMLElement>('ttff'),
    bufferInfo: byId<HTMLElement>('buffer-info'),
    prompt: byId<HTMLTextAreaElement>('prompt'),
    pendingPrompts: byId<HTMLUListElement>('pending-prompts'),
    start: byId<HTMLButtonElement>('start'),
    sendPrompt: byId<HTMLButtonElement>('send-prompt'),
    leave: byId<HTMLButtonElement>('leave'),
    pause: byId<HTMLInputElement>('toggle-pause'),
    loop: byId<HTMLInputElement>('toggle-loop'),
    auto: byId<HTMLInputElement>('toggle-auto'),
    enhance: byId<HTMLInputElement>('toggle-enhance'),
    imageFile: byId<HTMLInputElement>('image-file'),
    imageThumb: byId<HTMLImageElement>('image-thumb'),
    imageInfo: byId<HTMLElement>('image-info'),
    clearImage: byId<HTMLButtonElement>('clear-image'),
    downloadState: byId<HTMLButtonElement>('download-state'),
    stateFile: byId<HTMLInputElement>('state-file'),
    loadedState: byId<HTMLElement>('loaded-state'),
    clearState: byId<HTMLButtonElement>('clear-state'),
    downloadLink: byId<HTMLAnchorElement>('download-link'),
    curatedList: byId<HTMLOListElement>('curated-list'),
    curatedNew: byId<HTMLInputElement>('curated-new'),
    curatedAdd: byId<HTMLButtonElement>('curated-add'),
    segmentRows: byId<HTMLTableSectionElement>('segment-rows'),
    errors: byId<HTMLUListElement>('errors'),
  };
}
export type PageElements = ReturnType<typeof findElements>;

export function ms(value: number | undefined | null): string {
  if (value === undefined || value === null) return '–';
  return value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(0)} KiB`;
}

function cell(text: string, className?: string): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function line(text: string, className: string): HTMLDivElement {
  const div = document.createElement('div');
  div.className = className;
  div.textContent = text;
  return div;
}

/** Who wrote the prompt: "fake-model via fake, 412 ms". */
function promptAuthor(s: SegmentInfo): string {
  const who = s.promptModel && s.promptProvider ? `${s.promptModel} via ${s.promptProvider}` : (s.promptModel ?? s.promptProvider);
  const took = s.promptLatencyMs === undefined ? undefined : ms(s.promptLatencyMs);
  return [who, took].filter((part) => part !== undefined).join(', ');
}

/**
 * The prompt cell: the prompt generated; when the server's LLM wrote it, what it started
 * from ("You typed: … → Generated: …") and who wrote it; when the LLM failed, why, and that
 * the original was generated instead.
 */
function promptCell(s: SegmentInfo): HTMLTableCellElement {
  const td = document.createElement('td');
  td.className = 'prompt';
  td.dataset.source = s.source ?? '';
  td.dataset.fallback = String(s.fallbackUsed);
  const extension = s.source === 'auto_extension';
  const rewritten = s.originalPrompt !== undefined && s.originalPrompt !== s.prompt;
  if (rewritten) {
    const original = line(`${extension ? 'Continued from' : 'You typed'}: “${s.originalPrompt}”`, 'prompt-original');
    original.dataset.testid = 'prompt-original';
    td.append(original);
  }
  const generated = line(rewritten ? `→ Generated: “${s.prompt}”` : s.prompt, 'prompt-generated');
  generated.dataset.testid = 'prompt-generated';
  td.append(generated);
  const author = promptAuthor(s);
  if (author && !s.fallbackUsed) td.append(line(`${extension ? 'Continued' : 'Enhanced'} by ${author}`, 'prompt-author'));
  if (s.fallbackUsed) {
    const why = s.promptError ?? 'the LLM did not answer';
    const text = extension
      ? `Continuation by the LLM unavailable: ${why}; the last prompt goes on.`
      : `Enhancement unavailable: ${why}; generated as typed.`;
    const note = line(author ? `${text} (${author})` : text, 'prompt-fallback');
    note.dataset.testid = 'prompt-fallback';
    td.append(note);
  }
  return td;
}

export function renderSegments(tbody: HTMLTableSectionElement, segments: SegmentInfo[]): void {
  tbody.replaceChildren(
    ...segments.map((s) => {
      const row = document.createElement('tr');
      row.dataset.segmentIdx = String(s.segmentIdx);
      row.dataset.complete = String(s.complete);
      const steps = document.createElement('td');
      const bar = document.createElement('progress');
      bar.max = Math.max(1, s.totalSteps);
      bar.value = s.step;
      steps.append(bar, ` ${s.step}/${s.totalSteps}`);
      row.dataset.session = String(s.session);
      row.append(
        cell(String(s.session), 'num'),
        cell(String(s.segmentIdx), 'num'),
        promptCell(s),
        cell(s.source ?? '–'),
        steps,
        cell(ms(s.firstMediaMs), 'num'),
        cell(ms(s.generationTimeMs), 'num'),
        cell(ms(s.e2eLatencyMs), 'num'),
        cell(s.durationMs === undefined ? '–' : `${(s.durationMs / 1000).toFixed(2)} s`, 'num'),
        cell(s.bytes ? kib(s.bytes) : '–', 'num'),
      );
      return row;
    }),
  );
}

export function renderErrors(list: HTMLUListElement, errors: PlayerError[]): void {
  if (errors.length === 0) {
    const none = document.createElement('li');
    none.className = 'none';
    none.textContent = 'No errors.';
    list.replaceChildren(none);
    return;
  }
  list.replaceChildren(
    ...errors.map((e) => {
      const li = document.createElement('li');
      li.dataset.code = e.code;
      li.dataset.source = e.source;
      if (e.reason) li.dataset.reason = e.reason;
      const head = document.createElement('strong');
      const flags = [e.reason, e.retryable ? 'retryable' : undefined].filter((f) => f !== undefined);
      head.textContent = `${e.at.slice(11, 19)}  ${e.code}${flags.length > 0 ? ` (${flags.join(', ')})` : ''}: `;
      const said = e.message ? ` ${e.source === 'server' ? 'The server said' : 'Detail'}: “${e.message}”.` : '';
      li.append(head, `${e.explanation}${said}${e.next ? ` ${e.next}` : ''}`);
      return li;
    }),
  );
}

export function renderNotice(el: HTMLElement, notice: Notice | null): void {
  el.hidden = notice === null;
  el.dataset.kind = notice?.kind ?? '';
  el.textContent = notice?.text ?? '';
}

export function renderPending(list: HTMLUListElement, prompts: string[]): void {
  list.hidden = prompts.length === 0;
  list.replaceChildren(
    ...prompts.map((prompt, i) => {
      const li = document.createElement('li');
      li.textContent = `${i === 0 ? 'Next' : 'Then'}: ${prompt}`;
      return li;
    }),
  );
}
