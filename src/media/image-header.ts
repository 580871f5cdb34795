/**
 * Identifies a still image (PNG, JPEG, WebP) from its signature and reads the width and
 * height its header declares, without decoding anything. Used to refuse a client's
 * initial image that is not of its declared type, or whose declared size would make
 * a model's image loader allocate gigabytes (a decompression bomb).
 *
 * Everything here is hostile-input safe: every read is bounds-checked first (a read
 * past the end is reported as a truncated header, never attempted), and the work is
 * bounded regardless of the input (PNG and WebP look at a fixed number of bytes; the
 * JPEG marker walk jumps over segments by their lengths and is capped, see
 * MAX_JPEG_SEGMENTS). The only error thrown is ImageHeaderError.
 *
 * Layouts are from the PNG specification (signature, IHDR), ITU T.81 (JPEG markers, SOFn)
 * and the WebP container specification (RIFF, VP8 / VP8L / VP8X chunks).
 */
import { crc32 } from 'node:zlib';

export type ImageFormat = 'png' | 'jpeg' | 'webp';

/** What an image's header declares. width and height are always at least 1. */
export interface ImageHeader {
  format: ImageFormat;
  /** The canonical MIME type of `format`. */
  mime: 'image/png' | 'image/jpeg' | 'image/webp';
  width: number;
  height: number;
}

export type ImageHeaderErrorCode =
  /** The bytes start with none of the known signatures (or there are no bytes). */
  | 'unknown_signature'
  /** The data ends before the header does (including a prefix of a signature). */
  | 'truncated'
  /** The header is there but is not valid: wrong first chunk, bad length, zero size, CRC mismatch. */
  | 'malformed'
  /** A JPEG with more marker segments (or fill bytes) before its frame header than any real one has. */
  | 'too_complex';

/**
 * Why a header could not be read. The message is short, free of input bytes other than
 * escaped chunk names and numbers, and fit to show to a client.
 */
export class ImageHeaderError extends Error {
  override readonly name = 'ImageHeaderError';
  readonly code: ImageHeaderErrorCode;
  /** The format the signature identified, when it did (undefined for unknown_signature). */
  readonly format: ImageFormat | undefined;

  constructor(code: ImageHeaderErrorCode, message: string, format?: ImageFormat) {
    super(message);
    this.code = code;
    this.format = format;
  }
}

export interface ImageLimits {
  maxWidth: number;
  maxHeight: number;
  maxPixels: number;
}

/** 16384 per side and 2^28 pixels (16384 x 16384; 1 GiB as 8-bit RGBA). */
export const DEFAULT_IMAGE_LIMITS: Readonly<ImageLimits> = Object.freeze({
  maxWidth: 16384,
  maxHeight: 16384,
  maxPixels: 2 ** 28,
});

/**
 * The most JPEG marker segments walked before the frame header (SOFn). Real files have
 * a handful (APP0/APP1/APP2 ICC chunks/APP13, DQT, DHT, DRI, COM); an ICC profile split
 * over 64 KiB APP2 segments needs ~16 per MiB. Each segment costs O(1) (we jump by its
 * length), so this cap is what makes a JPEG of a million tiny segments cheap to refuse.
 */
export const MAX_JPEG_SEGMENTS = 1024;

/** The most 0xFF fill bytes (ITU T.81 B.1.1.2) allowed before markers, in total. */
export const MAX_JPEG_FILL_BYTES = 1024;

const NAMES: Record<ImageFormat, string> = { png: 'PNG', jpeg: 'JPEG', webp: 'WebP' };
const MIMES: Record<ImageFormat, ImageHeader['mime']> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** JPEG: SOI, then the 0xFF of the next marker. */
const JPEG_SIGNATURE = Buffer.from([0xff, 0xd8, 0xff]);
const RIFF = Buffer.from('RIFF', 'latin1');
const WEBP = Buffer.from('WEBP', 'latin1');

/** Which format the leading bytes belong to, and whether its whole signature is present. */
function sniff(bytes: Buffer): { format: ImageFormat; complete: boolean } | undefined {
  if (bytes.length === 0) return undefined;
  const prefixOf = (signature: Buffer, at = 0): boolean | undefined => {
    const n = Math.min(signature.length, bytes.length - at);
    if (n <= 0) return undefined; // nothing to compare
    return bytes.subarray(at, at + n).equals(signature.subarray(0, n));
  };
  if (prefixOf(PNG_SIGNATURE)) return { format: 'png', complete: bytes.length >= PNG_SIGNATURE.length };
  if (prefixOf(JPEG_SIGNATURE)) return { format: 'jpeg', complete: bytes.length >= JPEG_SIGNATURE.length };
  // WebP: "RIFF", 4 bytes of size, "WEBP".
  if (prefixOf(RIFF)) {
    const tag = prefixOf(WEBP, 8);
    if (tag === false) return undefined; // a RIFF file, but not WebP (WAV, AVI, ...)
    return { format: 'webp', complete: tag === true && bytes.length >= 12 };
  }
  return undefined;
}

/**
 * Identify the image and read its declared width and height.
 * @throws ImageHeaderError (and nothing else) when the bytes are not a PNG, JPEG or WebP
 *   with a readable, valid header.
 */
export function readImageHeader(bytes: Buffer): ImageHeader {
  const sniffed = sniff(bytes);
  if (sniffed === undefined) {
    throw new ImageHeaderError('unknown_signature', bytes.length === 0 ? 'not an image (no data)' : 'not an image (unknown signature)');
  }
  const { format } = sniffed;
  if (!sniffed.complete) throw truncated(format);
  const { width, height } = format === 'png' ? readPng(bytes) : format === 'jpeg' ? readJpeg(bytes) : readWebp(bytes);
  return { format, mime: MIMES[format], width, height };
}

function truncated(format: ImageFormat, detail?: string): ImageHeaderError {
  return new ImageHeaderError('truncated', `truncated ${NAMES[format]} header${detail ? ` (${detail})` : ''}`, format);
}

function malformed(format: ImageFormat, detail: string): ImageHeaderError {
  return new ImageHeaderError('malformed', `malformed ${NAMES[format]} header (${detail})`, format);
}

/** A four-character code for a message: printable ASCII as is, anything else as hex. */
function fourcc(bytes: Buffer): string {
  const printable = bytes.every((b) => b >= 0x20 && b <= 0x7e && b !== 0x22 && b !== 0x5c);
  return printable ? `"${bytes.toString('latin1')}"` : `0x${bytes.toString('hex')}`;
}

// ---------------------------------------------------------------------------- PNG

/** Allowed bit depths per colour type (PNG spec, IHDR). */
const PNG_BIT_DEPTHS: Record<number, readonly number[]> = {
  0: [1, 2, 4, 8, 16], // greyscale
  2: [8, 16], // truecolour
  3: [1, 2, 4, 8], // indexed
  4: [8, 16], // greyscale + alpha
  6: [8, 16], // truecolour + alpha
};
const PNG_MAX_DIMENSION = 2 ** 31 - 1;

function readPng(bytes: Buffer): { width: number; height: number } {
  // signature (8) | length (4) | "IHDR" (4) | 13 bytes of data | CRC (4)
  const IHDR_END = 8 + 4 + 4 + 13 + 4;
  if (bytes.length < 16) throw truncated('png');
  const length = bytes.readUInt32BE(8);
  const type = bytes.subarray(12, 16);
  if (!type.equals(Buffer.from('IHDR', 'latin1'))) throw malformed('png', `first chunk is ${fourcc(type)}, not IHDR`);
  if (length !== 13) throw malformed('png', `IHDR length is ${length}, not 13`);
  if (bytes.length < IHDR_END) throw truncated('png');
  if (crc32(bytes.subarray(12, 29)) !== bytes.readUInt32BE(29)) throw malformed('png', 'IHDR CRC mismatch');
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  if (width === 0 || height === 0 || width > PNG_MAX_DIMENSION || height > PNG_MAX_DIMENSION) {
    throw malformed('png', `invalid size ${width}x${height}`);
  }
  const [bitDepth = 0, colourType = 0, compression = 0, filter = 0, interlace = 0] = bytes.subarray(24, 29);
  if (!PNG_BIT_DEPTHS[colourType]?.includes(bitDepth)) throw malformed('png', `bit depth ${bitDepth} with colour type ${colourType}`);
  if (compression !== 0 || filter !== 0 || interlace > 1) throw malformed('png', 'unknown compression, filter or interlace method');
  return { width, height };
}

// --------------------------------------------------------------------------- JPEG

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const TEM = 0x01;

/** SOF0-SOF3, SOF5-SOF7, SOF9-SOF11, SOF13-SOF15: every frame header (C4 DHT, C8 JPG, CC DAC are not). */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

function readJpeg(bytes: Buffer): { width: number; height: number } {
  let pos = 2; // after SOI
  let fill = 0;
  for (let segments = 0; ; segments++) {
    if (segments >= MAX_JPEG_SEGMENTS) {
      throw new ImageHeaderError('too_complex', `JPEG has more than ${MAX_JPEG_SEGMENTS} marker segments before its frame header`, 'jpeg');
    }
    if (pos >= bytes.length) throw truncated('jpeg');
    if (bytes[pos] !== 0xff) throw malformed('jpeg', `expected a marker at byte ${pos}`);
    // Any number of 0xFF fill bytes may precede a marker (bounded in total).
    while (pos + 1 < bytes.length && bytes[pos + 1] === 0xff) {
      pos++;
      if (++fill > MAX_JPEG_FILL_BYTES) {
        throw new ImageHeaderError('too_complex', `JPEG has more than ${MAX_JPEG_FILL_BYTES} fill bytes before its frame header`, 'jpeg');
      }
    }
    if (pos + 2 > bytes.length) throw truncated('jpeg');
    const marker = bytes[pos + 1] ?? 0;
    const at = pos;
    // Standalone markers: no length field.
    if (marker === TEM || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    if (marker === SOI) throw malformed('jpeg', `second start of image at byte ${at}`);
    if (marker === EOI) throw malformed('jpeg', 'end of image before the frame header');
    if (marker === SOS) throw malformed('jpeg', 'scan before the frame header');
    // 0x00 is byte stuffing, not a marker; 0x02-0xBF are reserved and decoders (libjpeg, Pillow)
    // refuse them, so they are not skipped here either.
    if (marker < 0xc0) throw malformed('jpeg', `unknown marker 0xff${marker.toString(16).padStart(2, '0')} at byte ${at}`);
    if (pos + 4 > bytes.length) throw truncated('jpeg');
    const length = bytes.readUInt16BE(pos + 2); // counts itself, not the marker
    if (length < 2) throw malformed('jpeg', `segment at byte ${at} has length ${length}`);
    const end = pos + 2 + length;
    if (isStartOfFrame(marker)) {
      // length (2) | precision (1) | lines Y (2) | samples per line X (2) | components Nf (1) | 3 bytes per component
      if (length < 8) throw malformed('jpeg', `frame header length ${length}`);
      if (end > bytes.length) throw truncated('jpeg');
      const height = bytes.readUInt16BE(pos + 5);
      const width = bytes.readUInt16BE(pos + 7);
      const components = bytes[pos + 9] ?? 0;
      if (components === 0 || length !== 8 + 3 * components) {
        throw malformed('jpeg', `frame header length ${length} with ${components} components`);
      }
      // Y = 0 means "defined later by a DNL marker", which the usual loaders do not support.
      if (width === 0 || height === 0) throw malformed('jpeg', `invalid size ${width}x${height}`);
      return { width, height };
    }
    // Any other segment (APPn, COM, DQT, DHT, DRI, DAC, DNL, DHP, EXP, JPG, JPGn): skip by its length.
    if (end > bytes.length) throw truncated('jpeg');
    pos = end;
  }
}

// --------------------------------------------------------------------------- WebP

function readWebp(bytes: Buffer): { width: number; height: number } {
  // "RIFF" | size (u32 LE: bytes after this field) | "WEBP" | first chunk: fourcc | size (u32 LE) | data
  const riffSize = bytes.readUInt32LE(4);
  const riffEnd = 8 + riffSize;
  if (riffEnd > bytes.length) throw truncated('webp', `RIFF size ${riffSize} exceeds the ${bytes.length - 8} bytes present`);
  if (riffEnd < 20) throw malformed('webp', `RIFF size ${riffSize} leaves no room for a chunk`);
  const type = bytes.subarray(12, 16);
  const chunkSize = bytes.readUInt32LE(16);
  const data = 20;
  if (chunkSize > riffEnd - data) throw malformed('webp', `${fourcc(type)} chunk size ${chunkSize} exceeds the RIFF size`);
  const name = type.toString('latin1');
  if (name === 'VP8 ') {
    // Lossy (RFC 6386 9.1): 3-byte frame tag, start code 9D 01 2A, 14-bit width and height (2 scale bits each).
    if (chunkSize < 10) throw malformed('webp', `VP8 chunk size ${chunkSize}`);
    const tag = bytes[data] ?? 0;
    if ((tag & 1) !== 0) throw malformed('webp', 'VP8 data is not a key frame');
    if (bytes[data + 3] !== 0x9d || bytes[data + 4] !== 0x01 || bytes[data + 5] !== 0x2a) throw malformed('webp', 'VP8 start code missing');
    return checkedSize(bytes.readUInt16LE(data + 6) & 0x3fff, bytes.readUInt16LE(data + 8) & 0x3fff);
  }
  if (name === 'VP8L') {
    // Lossless: signature 0x2F, then 14 bits width-1, 14 bits height-1, 1 bit alpha, 3 bits version (0).
    if (chunkSize < 5) throw malformed('webp', `VP8L chunk size ${chunkSize}`);
    if (bytes[data] !== 0x2f) throw malformed('webp', 'VP8L signature missing');
    const bits = bytes.readUInt32LE(data + 1);
    if (bits >>> 29 !== 0) throw malformed('webp', `VP8L version ${bits >>> 29}`);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (name === 'VP8X') {
    // Extended: flags (1), reserved (3), canvas width-1 (u24 LE), canvas height-1 (u24 LE).
    if (chunkSize < 10) throw malformed('webp', `VP8X chunk size ${chunkSize}`);
    const width = bytes.readUIntLE(data + 4, 3) + 1;
    const height = bytes.readUIntLE(data + 7, 3) + 1;
    // The container spec bounds the canvas: width * height at most 2^32 - 1.
    if (width * height > 2 ** 32 - 1) throw malformed('webp', `canvas ${width}x${height} exceeds 2^32-1 pixels`);
    return { width, height };
  }
  throw malformed('webp', `first chunk is ${fourcc(type)}, not VP8, VP8L or VP8X`);
}

function checkedSize(width: number, height: number): { width: number; height: number } {
  if (width === 0 || height === 0) throw malformed('webp', `invalid size ${width}x${height}`);
  return { width, height };
}

// ------------------------------------------------------------------ initial image

const DECLARED: Record<string, ImageFormat> = {
  'image/png': 'png',
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/webp': 'webp',
};

/** A client-supplied string made safe to echo: printable ASCII only, bounded length. */
function echo(value: string): string {
  const clean = value.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 64 ? `${clean.slice(0, 64)}...` : clean;
}

/**
 * Check a client's initial image against its declared MIME type and size limits.
 * Returns a client-facing reason (prefixed with the field it concerns, e.g.
 * `initial_image.data: not a PNG image (declared image/png, found JPEG)`), or undefined
 * when the image is acceptable. image/jpg counts as image/jpeg; MIME types are matched
 * case-insensitively. Never throws for any input bytes.
 */
export function checkInitialImage(bytes: Buffer, declaredMime: string, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): string | undefined {
  const declared = DECLARED[declaredMime.trim().toLowerCase()];
  if (declared === undefined) return `initial_image.mime: unsupported image type "${echo(declaredMime)}"`;
  let header: ImageHeader;
  try {
    header = readImageHeader(bytes);
  } catch (error) {
    if (!(error instanceof ImageHeaderError)) throw error; // a bug, not bad input
    if (error.format !== undefined && error.format !== declared) return mismatch(declared, declaredMime, error.format);
    return `initial_image.data: ${error.message}`;
  }
  if (header.format !== declared) return mismatch(declared, declaredMime, header.format);
  const { width, height } = header;
  if (width > limits.maxWidth || height > limits.maxHeight) {
    return `initial_image.data: image is ${width}x${height}, larger than ${limits.maxWidth}x${limits.maxHeight}`;
  }
  if (width * height > limits.maxPixels) {
    return `initial_image.data: image is ${width}x${height} (${width * height} pixels), more than ${limits.maxPixels} pixels`;
  }
  return undefined;
}

function mismatch(declared: ImageFormat, declaredMime: string, found: ImageFormat): string {
  return `initial_image.data: not a ${NAMES[declared]} image (declared ${echo(declaredMime)}, found ${NAMES[found]})`;
}
