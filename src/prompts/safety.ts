/**
 * The prompt safety filter: a blocklist file and FastVideo's fastText classifier
 * (`streaming.safety.classifier_path`), either or both. A prompt either passes or is
 * blocked with a reason; checks are synchronous (a dictionary lookup, a fastText
 * prediction), so every path to the generator can afford one.
 *
 * When a configured part cannot be loaded, the filter says so in the log and `/status`
 * and lets prompts through (FastVideo's "unavailable means allow"), because a video
 * server that stops serving when a classifier file is missing is worse than one that
 * reports the gap loudly.
 */
import { readFile } from 'node:fs/promises';
import type { FastTextClassifier } from './fasttext.js';

export type SafetyFilterName = 'blocklist' | 'classifier';

export type SafetyVerdict =
  | { allowed: true }
  | {
      allowed: false;
      filter: SafetyFilterName;
      /** Says why, for the client and the log: the blocked term, or the label and its score. */
      reason: string;
      label?: string;
      score?: number;
    };

export interface SafetyOptions {
  enabled: boolean;
  /** A fastText supervised model (FastVideo's `classifier_path`). */
  classifierPath?: string;
  /** Probability at or above which an unsafe label blocks (FastVideo: 0.5). */
  blockThreshold: number;
  /** Labels (without `__label__`) that mean unsafe. */
  unsafeLabels: readonly string[];
  /** A text file of blocked terms: one word or phrase per line, `#` starts a comment. */
  blocklistPath?: string;
  /** Loads the classifier (the WASM fastText build; a test may supply another). */
  loadClassifier?: (path: string) => Promise<FastTextClassifier>;
  log?: (level: 'info' | 'warn', message: string, fields?: Record<string, unknown>) => void;
}

export interface SafetyStatus {
  enabled: boolean;
  /** Every configured part loaded: prompts are really checked. */
  available: boolean;
  blocklist: { path: string; terms: number; loaded: boolean; error?: string } | null;
  classifier: { path: string; loaded: boolean; error?: string; block_threshold: number; unsafe_labels: string[] } | null;
}

/** Lower case, compatibility forms folded, runs of anything but letters and digits as one space. */
function normalise(text: string): string {
  return ` ${text.normalize('NFKC').toLowerCase().replace(/[^\p{L}\p{N}]+/gu, ' ').trim()} `;
}

export class PromptSafety {
  private terms: string[] = [];
  private blocklistError: string | undefined;
  private blocklistLoaded = false;
  private classifier: FastTextClassifier | undefined;
  private classifierError: string | undefined;

  constructor(private readonly options: SafetyOptions) {}

  get enabled(): boolean {
    return this.options.enabled && (this.options.classifierPath !== undefined || this.options.blocklistPath !== undefined);
  }

  /** Loads the configured parts; never rejects (a part that fails is reported and skipped). */
  async start(): Promise<void> {
    if (!this.enabled) {
      if (this.options.enabled) this.log('warn', 'safety filter enabled but neither classifier_path nor blocklist_path is set: prompts are not checked');
      return;
    }
    await Promise.all([this.loadBlocklist(), this.loadClassifier()]);
  }

  /** Reads the blocklist again (SIGHUP); the classifier stays as loaded. */
  async reload(): Promise<void> {
    if (this.enabled) await this.loadBlocklist();
  }

  check(prompt: string): SafetyVerdict {
    if (!this.enabled) return { allowed: true };
    if (this.terms.length > 0) {
      const text = normalise(prompt);
      const term = this.terms.find((t) => text.includes(t));
      if (term) return { allowed: false, filter: 'blocklist', reason: `it contains the blocked term "${term.trim()}"` };
    }
    const classifier = this.classifier;
    if (classifier) {
      let top: { label: string; probability: number } | undefined;
      try {
        top = classifier.predict(prompt, 1)[0];
      } catch (err) {
        this.log('warn', 'safety classifier failed on a prompt; allowed', { err: String(err) });
        return { allowed: true };
      }
      if (top && this.options.unsafeLabels.includes(top.label) && top.probability >= this.options.blockThreshold) {
        return {
          allowed: false,
          filter: 'classifier',
          reason: `the classifier labels it "${top.label}" (${top.probability.toFixed(2)} ≥ ${this.options.blockThreshold})`,
          label: top.label,
          score: top.probability,
        };
      }
    }
    return { allowed: true };
  }

  status(): SafetyStatus {
    const { classifierPath, blocklistPath } = this.options;
    const blocklist = blocklistPath
      ? { path: blocklistPath, terms: this.terms.length, loaded: this.blocklistLoaded, ...(this.blocklistError ? { error: this.blocklistError } : {}) }
      : null;
    const classifier = classifierPath
      ? {
          path: classifierPath,
          loaded: this.classifier !== undefined,
          ...(this.classifierError ? { error: this.classifierError } : {}),
          block_threshold: this.options.blockThreshold,
          unsafe_labels: [...this.options.unsafeLabels],
        }
      : null;
    const available = this.enabled && (blocklist?.loaded ?? true) && (classifier?.loaded ?? true);
    return { enabled: this.enabled, available, blocklist, classifier };
  }

  close(): void {
    this.classifier?.close();
    this.classifier = undefined;
  }

  private async loadBlocklist(): Promise<void> {
    const path = this.options.blocklistPath;
    if (!path) return;
    try {
      const text = await readFile(path, 'utf8');
      this.terms = [
        ...new Set(
          text
            .split(/\r?\n/)
            .map((line) => line.replace(/#.*$/, ''))
            .map(normalise)
            .filter((t) => t.trim() !== ''),
        ),
      ];
      this.blocklistLoaded = true;
      this.blocklistError = undefined;
      this.log('info', 'safety blocklist loaded', { path, terms: this.terms.length });
    } catch (err) {
      // A reload that fails keeps the terms it had; a first load that fails leaves none.
      this.blocklistError = err instanceof Error ? err.message : String(err);
      this.log('warn', `safety blocklist ${path} cannot be read: ${this.blocklistError}; ${this.blocklistLoaded ? 'keeping the terms loaded before' : 'prompts are not checked against it'}`);
    }
  }

  private async loadClassifier(): Promise<void> {
    const path = this.options.classifierPath;
    if (!path) return;
    try {
      const load = this.options.loadClassifier ?? (async (p: string) => (await import('./fasttext.js')).loadFastTextClassifier(p));
      this.classifier = await load(path);
      this.classifierError = undefined;
      this.log('info', 'safety classifier loaded', { path });
    } catch (err) {
      this.classifierError = err instanceof Error ? err.message : String(err);
      this.log('warn', `safety classifier unavailable: ${this.classifierError}; prompts are not checked by it`);
    }
  }

  private log(level: 'info' | 'warn', message: string, fields: Record<string, unknown> = {}): void {
    this.options.log?.(level, message, fields);
  }
}
