/**
 * The system prompts of the three LLM operations. Defaults are built in; a directory
 * (`streaming.prompt.system_prompt_dir`) overrides each one with a file named after the
 * operation, as FastVideo names them: `enhance.txt`, `auto_extend.txt`, `rewrite.txt`
 * (`.md` is read too). Files are read again on `reload()` (SIGHUP) and when they change.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PromptOperation } from './llm.js';

export const DEFAULT_SYSTEM_PROMPTS: Readonly<Record<PromptOperation, string>> = {
  enhance: [
    'You improve prompts for a video generation model that makes a continuous story in short segments of about five seconds.',
    'Rewrite the user prompt as one vivid, concrete description of what is seen and heard in those seconds:',
    'the subject and its action, the setting, light and weather, the camera (framing and movement), and sound when it matters.',
    'Keep every subject, name, object and action the user gave, and keep their meaning; add detail, never a new plot.',
    'Write in the present tense, in English, as plain prose of at most 120 words.',
    'Reply with the prompt only: no title, no quotes, no explanation.',
  ].join(' '),
  auto_extend: [
    'You continue a video story that a model generates in segments of about five seconds each.',
    'You get the prompts of the segments so far, oldest first, and sometimes the prompts the user planned for the story.',
    'Write the prompt of the next segment: it follows on from the last one in time and place, keeps the same characters, look and camera style,',
    'and moves the story one small step forward. Do not repeat an earlier prompt and do not jump to a new scene without a reason.',
    'Write in the present tense, in English, as plain prose of at most 120 words.',
    'Reply with the prompt only: no title, no quotes, no explanation.',
  ].join(' '),
  rewrite: [
    'You plan a video story made of short segments of about five seconds each.',
    'You get what the user wants and the number of segments, and sometimes the current plan.',
    'Write one prompt per segment so that together they tell that story in order: the same characters and look throughout,',
    'each segment continuing from the one before. Each prompt is plain present-tense English prose of at most 120 words.',
    'Reply with a JSON array of the prompts (strings) and nothing else.',
  ].join(' '),
};

const OPERATIONS = Object.keys(DEFAULT_SYSTEM_PROMPTS) as PromptOperation[];

export interface SystemPromptSource {
  /** The operation's prompt now. */
  get(operation: PromptOperation): string;
  /** Where each prompt came from (a file path or `default`), for `/status`. */
  sources(): Record<PromptOperation, string>;
}

export class SystemPrompts implements SystemPromptSource {
  private prompts: Record<PromptOperation, string> = { ...DEFAULT_SYSTEM_PROMPTS };
  private origin: Record<PromptOperation, string> = { enhance: 'default', auto_extend: 'default', rewrite: 'default' };
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private reloading: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string | undefined,
    private readonly onError: (message: string, err?: unknown) => void = () => undefined,
    private readonly onReload: (sources: Record<PromptOperation, string>) => void = () => undefined,
  ) {}

  get(operation: PromptOperation): string {
    return this.prompts[operation];
  }

  sources(): Record<PromptOperation, string> {
    return { ...this.origin };
  }

  /** Reads the files now, then follows changes to the directory. */
  async start(): Promise<void> {
    await this.reload();
    if (!this.dir || this.watcher) return;
    try {
      this.watcher = watch(this.dir, () => {
        // Editors write a file in several steps; read once they are done.
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => void this.reload(), 100);
        this.debounce.unref();
      });
      this.watcher.on('error', (err) => this.onError(`system_prompt_dir ${this.dir}: cannot follow changes`, err));
      this.watcher.unref();
    } catch (err) {
      this.onError(`system_prompt_dir ${this.dir}: cannot follow changes; send SIGHUP to reload`, err);
    }
  }

  /** Reads every file again; a missing or empty file means the built-in default. */
  reload(): Promise<void> {
    this.reloading = this.reloading.then(() => this.readAll());
    return this.reloading;
  }

  close(): void {
    clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = undefined;
  }

  private async readAll(): Promise<void> {
    if (!this.dir) return;
    const prompts = { ...DEFAULT_SYSTEM_PROMPTS };
    const origin: Record<PromptOperation, string> = { enhance: 'default', auto_extend: 'default', rewrite: 'default' };
    for (const operation of OPERATIONS) {
      for (const name of [`${operation}.txt`, `${operation}.md`]) {
        const path = join(this.dir, name);
        const text = await readFile(path, 'utf8').then(
          (t) => t.trim(),
          (err: NodeJS.ErrnoException) => {
            if (err.code !== 'ENOENT') this.onError(`system prompt ${path}: ${err.message}; using the previous one`);
            return err.code === 'ENOENT' ? undefined : null;
          },
        );
        if (text === null) {
          // Unreadable now: keep what was there.
          prompts[operation] = this.prompts[operation];
          origin[operation] = this.origin[operation];
          break;
        }
        if (text) {
          prompts[operation] = text;
          origin[operation] = path;
          break;
        }
      }
    }
    this.prompts = prompts;
    this.origin = origin;
    this.onReload(this.sources());
  }
}
