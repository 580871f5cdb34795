/** The media layer: raw frames (+ audio) in, box-aligned fMP4 or whole-JPEG chunks out. */
import { FragmentedMp4Encoder, type FragmentedMp4EncoderOptions } from './fmp4-encoder.js';
import { JpegFrameEncoder, type JpegFrameEncoderOptions } from './jpeg-encoder.js';
import type { SegmentEncoder, SegmentEncoderMode } from './segment-encoder.js';

export type { MediaChunk } from './types.js';
export type { EncodeSummary, SegmentEncoder, SegmentEncoderMode, SegmentEncoderOptions } from './segment-encoder.js';
export { EncoderAbortedError, EncoderError, type EncoderErrorCode, isAbortError } from './errors.js';
export { FragmentedMp4Encoder, type FragmentedMp4EncoderOptions, fragmentedMp4Args } from './fmp4-encoder.js';
export { JpegFrameEncoder, type JpegFrameEncoderOptions, JPEG_MIME, jpegArgs } from './jpeg-encoder.js';
export { mimeFromInitSegment } from './avc-mime.js';
export {
  checkInitialImage,
  DEFAULT_IMAGE_LIMITS,
  type ImageFormat,
  type ImageHeader,
  ImageHeaderError,
  type ImageHeaderErrorCode,
  type ImageLimits,
  MAX_JPEG_FILL_BYTES,
  MAX_JPEG_SEGMENTS,
  readImageHeader,
} from './image-header.js';
export {
  type Box,
  BoxFormatError,
  BoxSplitter,
  childBoxes,
  findChild,
  findPath,
  iterateBoxes,
  readBaseMediaDecodeTime,
  readTracks,
  type TrackInfo,
} from './boxes.js';

/** Options for either mode; mode-specific fields are ignored by the other. */
export type CreateSegmentEncoderOptions = FragmentedMp4EncoderOptions & JpegFrameEncoderOptions;

/** Start the encoder for a session's stream mode (spawns ffmpeg now). */
export function createSegmentEncoder(mode: SegmentEncoderMode, options: CreateSegmentEncoderOptions): SegmentEncoder {
  switch (mode) {
    case 'av_fmp4':
      return new FragmentedMp4Encoder(options);
    case 'legacy_jpeg':
      return new JpegFrameEncoder(options);
  }
}
