/**
 * A frame's global index, drawn as a strip of black and white blocks along the top of
 * an RGB24 frame, so tests and tools can tell which frame they are looking at after
 * H.264 or JPEG has been through it.
 *
 * Layout: 32 square blocks of `blockSize` px, starting at the top-left corner, laid out
 * left to right in rows of `columns` (32, 16 or 8: the most that fit the width), top
 * row first. Bits, in that order, white = 1:
 *
 *   bits 0..3    marker 1 0 1 1
 *   bits 4..27   index, 24 bits, most significant first
 *   bits 28..31  check: XOR of the index's six nibbles, XOR 0b0101
 *
 * `blockSize` is 8 * max(1, min(floor(width / 256), floor(height / 144))): a multiple of
 * 8 aligned to the frame origin, so each block covers whole 8x8 transform blocks and
 * whole 2x2 chroma cells; it grows with the frame (8 px at 160x96, 32 at 1024x576,
 * 56 at 1920x1080) so the strip stays legible when the video is scaled down.
 */

/** Bits the strip carries for the index; a larger index must be wrapped by the caller. */
export const FRAME_INDEX_BITS = 24;
export const FRAME_INDEX_LIMIT = 2 ** FRAME_INDEX_BITS;

const MARKER = [1, 0, 1, 1] as const;
const CHECK_BITS = 4;
const CHECK_SALT = 0b0101;
const TOTAL_BITS = MARKER.length + FRAME_INDEX_BITS + CHECK_BITS;
const COLUMN_CHOICES = [32, 16, 8] as const;

/** Decoded luma below this reads as 0, above the next as 1; between them means no strip. */
const BLACK_BELOW = 96;
const WHITE_ABOVE = 160;

export interface FrameIndexStripLayout {
  /** Side of one square block in pixels (a multiple of 8). */
  blockSize: number;
  /** Blocks per row. */
  columns: number;
  rows: number;
  /** Pixel extent of the strip from the top-left corner. */
  stripWidth: number;
  stripHeight: number;
}

/** Where the strip goes in a frame of this size; throws a RangeError if it does not fit. */
export function frameIndexStripLayout(width: number, height: number): FrameIndexStripLayout {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`frame size must be positive integers, got ${width}x${height}`);
  }
  const blockSize = 8 * Math.max(1, Math.min(Math.floor(width / 256), Math.floor(height / 144)));
  const columns = COLUMN_CHOICES.find((c) => c * blockSize <= width);
  if (columns === undefined) {
    throw new RangeError(`frame ${width}x${height} is too narrow for the frame-index strip (needs width >= 64)`);
  }
  const rows = TOTAL_BITS / columns;
  if (rows * blockSize > height) {
    throw new RangeError(
      `frame ${width}x${height} is too short for the frame-index strip (needs height >= ${rows * blockSize})`,
    );
  }
  return { blockSize, columns, rows, stripWidth: columns * blockSize, stripHeight: rows * blockSize };
}

function checkNibble(index: number): number {
  let check = CHECK_SALT;
  for (let shift = 0; shift < FRAME_INDEX_BITS; shift += 4) check ^= (index >>> shift) & 0xf;
  return check;
}

function stripBits(index: number): number[] {
  const bits: number[] = [...MARKER];
  for (let i = FRAME_INDEX_BITS - 1; i >= 0; i--) bits.push((index >>> i) & 1);
  const check = checkNibble(index);
  for (let i = CHECK_BITS - 1; i >= 0; i--) bits.push((check >>> i) & 1);
  return bits;
}

function assertFrameLength(frame: Buffer, width: number, height: number): void {
  if (frame.length < width * height * 3) {
    throw new RangeError(`frame holds ${frame.length} bytes, a ${width}x${height} RGB24 frame needs ${width * height * 3}`);
  }
}

/** Draw `index` (0 .. 2^24-1) into the top of an RGB24 frame, in place. */
export function writeFrameIndex(frame: Buffer, width: number, height: number, index: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= FRAME_INDEX_LIMIT) {
    throw new RangeError(`frame index must be an integer in [0, ${FRAME_INDEX_LIMIT - 1}], got ${index}`);
  }
  const layout = frameIndexStripLayout(width, height);
  assertFrameLength(frame, width, height);
  const { blockSize, columns } = layout;
  stripBits(index).forEach((bit, i) => {
    const x0 = (i % columns) * blockSize;
    const y0 = Math.floor(i / columns) * blockSize;
    const value = bit === 1 ? 255 : 0;
    for (let y = y0; y < y0 + blockSize; y++) {
      const start = (y * width + x0) * 3;
      frame.fill(value, start, start + blockSize * 3);
    }
  });
}

/**
 * Read the index back from a decoded RGB24 frame: average the luma of the middle half
 * of each block and threshold it. Null when no strip is there (a block is neither
 * clearly black nor clearly white, or the marker or check does not match).
 */
export function readFrameIndex(rgb: Buffer, width: number, height: number): number | null {
  const { blockSize, columns } = frameIndexStripLayout(width, height);
  assertFrameLength(rgb, width, height);
  const inset = blockSize / 4;
  const side = blockSize / 2;
  const bits: number[] = [];
  for (let i = 0; i < TOTAL_BITS; i++) {
    const x0 = (i % columns) * blockSize + inset;
    const y0 = Math.floor(i / columns) * blockSize + inset;
    let sum = 0;
    for (let y = y0; y < y0 + side; y++) {
      let p = (y * width + x0) * 3;
      for (let x = 0; x < side; x++, p += 3) {
        sum += 0.299 * rgb[p]! + 0.587 * rgb[p + 1]! + 0.114 * rgb[p + 2]!;
      }
    }
    const luma = sum / (side * side);
    if (luma < BLACK_BELOW) bits.push(0);
    else if (luma > WHITE_ABOVE) bits.push(1);
    else return null;
  }
  if (MARKER.some((bit, i) => bits[i] !== bit)) return null;
  let index = 0;
  for (let i = 0; i < FRAME_INDEX_BITS; i++) index = index * 2 + bits[MARKER.length + i]!;
  let check = 0;
  for (let i = 0; i < CHECK_BITS; i++) check = check * 2 + bits[MARKER.length + FRAME_INDEX_BITS + i]!;
  return check === checkNibble(index) ? index : null;
}
