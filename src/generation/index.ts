/** Public surface of the generation layer: the Generator contract and the built-in synthetic generator. */
export type {
  AudioFormat,
  ContinuationState,
  GenerationEvent,
  Generator,
  SegmentRequest,
} from './types.js';
export { ContinuationStateError, InvalidSegmentRequestError } from './errors.js';
export {
  FRAME_INDEX_BITS,
  FRAME_INDEX_LIMIT,
  type FrameIndexStripLayout,
  frameIndexStripLayout,
  readFrameIndex,
  writeFrameIndex,
} from './frame-index-strip.js';
export {
  SYNTHETIC_DEFAULT_MODEL_ID,
  SyntheticGenerator,
  type SyntheticGeneratorOptions,
  validateSegmentRequest,
} from './synthetic.js';
export {
  SYNTHETIC_CONTINUATION_KIND,
  SYNTHETIC_CONTINUATION_SCHEMA,
  type SyntheticContinuation,
  decodeSyntheticContinuation,
} from './synthetic-continuation.js';
export { TONE_AMPLITUDE } from './synthetic-audio.js';
export { SyntheticRenderThread, ThreadedSyntheticGenerator } from './threaded-synthetic.js';
export { type Rgb, promptColour, promptToneHz } from './synthetic-scene.js';
