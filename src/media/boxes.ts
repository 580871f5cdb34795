/**
 * ISO-BMFF (MP4) box reading: split a byte stream into whole top-level boxes, walk
 * child boxes, and read or patch the few fields livegen needs. Boxes are subarrays of
 * the bytes they came from wherever possible, so patching one writes through.
 */

/** A whole box: `data` covers header and payload. */
export interface Box {
  type: string;
  /** Bytes of the header (8, 16 with a 64-bit size, +16 for `uuid`). */
  headerSize: number;
  data: Buffer;
}

export class BoxFormatError extends Error {
  override readonly name = 'BoxFormatError';
}

/** Container boxes whose payload is nothing but child boxes. */
const PURE_CONTAINERS = new Set([
  'moov', 'trak', 'mdia', 'minf', 'stbl', 'dinf', 'edts', 'mvex', 'udta',
  'moof', 'traf', 'mfra', 'skip',
]);

/**
 * Where the children start inside a box's payload, for boxes that hold a fixed
 * header before their children (full-box fields, sample-entry fields).
 */
const CHILD_OFFSETS: Record<string, number> = {
  stsd: 8, // version/flags + entry_count
  dref: 8,
  meta: 4, // full box
  // VisualSampleEntry: 8 bytes SampleEntry + 70 bytes of visual fields.
  avc1: 78, avc3: 78, hvc1: 78, hev1: 78, av01: 78, vp09: 78, mp4v: 78, encv: 78,
  // AudioSampleEntry (version 0): 8 bytes SampleEntry + 20 bytes of audio fields.
  mp4a: 28, 'ac-3': 28, 'ec-3': 28, Opus: 28, fLaC: 28, enca: 28,
};

const MAX_UINT32 = 0xffff_ffffn;

export function payload(box: Box): Buffer {
  return box.data.subarray(box.headerSize);
}

function isPrintableFourCC(buf: Buffer, offset: number): boolean {
  for (let i = offset; i < offset + 4; i++) {
    const c = buf[i] ?? 0;
    // ISO allows any 4CC, but top-level boxes in practice are printable ASCII (plus
    // '©' in udta items); rejecting garbage here catches a desynchronised stream early.
    if ((c < 0x20 || c > 0x7e) && c !== 0xa9) return false;
  }
  return true;
}

export interface BoxHeader {
  type: string;
  headerSize: number;
  /** Total size in bytes, or `null` for size 0 ("extends to the end of the enclosing space"). */
  size: number | null;
}

/**
 * Parse a box header at `offset`, or return `undefined` when fewer bytes than the header
 * needs are available. Throws `BoxFormatError` on sizes no valid box can have.
 */
export function readBoxHeader(buf: Buffer, offset = 0, maxSize = Number.MAX_SAFE_INTEGER): BoxHeader | undefined {
  if (buf.length - offset < 8) return undefined;
  const size32 = buf.readUInt32BE(offset);
  if (!isPrintableFourCC(buf, offset + 4)) {
    throw new BoxFormatError(`box at ${offset} has an unprintable type ${buf.subarray(offset + 4, offset + 8).toString('hex')}`);
  }
  const type = buf.toString('latin1', offset + 4, offset + 8);
  let headerSize = 8;
  let size: number | null;
  if (size32 === 1) {
    if (buf.length - offset < 16) return undefined;
    const large = buf.readBigUInt64BE(offset + 8);
    if (large > BigInt(Number.MAX_SAFE_INTEGER)) throw new BoxFormatError(`box '${type}' is too large (${large} bytes)`);
    size = Number(large);
    headerSize = 16;
  } else if (size32 === 0) {
    size = null;
  } else {
    size = size32;
  }
  if (type === 'uuid') headerSize += 16;
  if (size !== null && size < headerSize) throw new BoxFormatError(`box '${type}' has size ${size}, smaller than its ${headerSize}-byte header`);
  if (size !== null && size > maxSize) throw new BoxFormatError(`box '${type}' has size ${size}, above the ${maxSize}-byte limit`);
  return { type, headerSize, size };
}

/**
 * Iterate the boxes laid end to end in `buf[start, end)`. A size-0 box takes the rest
 * of the range; a box running past `end` is a format error.
 */
export function* iterateBoxes(buf: Buffer, start = 0, end = buf.length): Generator<Box> {
  let offset = start;
  const range = buf.subarray(0, end);
  while (offset < end) {
    const header = readBoxHeader(range, offset);
    if (!header) throw new BoxFormatError(`truncated box header at ${offset}`);
    const size = header.size ?? end - offset;
    if (size < header.headerSize || offset + size > end) {
      throw new BoxFormatError(`box '${header.type}' at ${offset} (size ${size}) overruns its container (ends at ${end})`);
    }
    yield { type: header.type, headerSize: header.headerSize, data: buf.subarray(offset, offset + size) };
    offset += size;
  }
}

/** The child boxes of a container or sample-entry box. Empty for leaf boxes. */
export function* childBoxes(box: Box): Generator<Box> {
  const skip = PURE_CONTAINERS.has(box.type) ? 0 : CHILD_OFFSETS[box.type];
  if (skip === undefined) return;
  yield* iterateBoxes(box.data, box.headerSize + skip);
}

/** The first child of `box` of `type`, if any. */
export function findChild(box: Box, type: string): Box | undefined {
  for (const child of childBoxes(box)) if (child.type === type) return child;
  return undefined;
}

/** Follow a path of box types down from `box`: `findPath(moov, ['trak', 'mdia', 'mdhd'])`. */
export function findPath(box: Box, path: readonly string[]): Box | undefined {
  let current: Box | undefined = box;
  for (const type of path) {
    if (!current) return undefined;
    current = findChild(current, type);
  }
  return current;
}

/** All children of `box` of `type`, in order. */
export function findChildren(box: Box, type: string): Box[] {
  return [...childBoxes(box)].filter((child) => child.type === type);
}

function fullBoxVersion(box: Box): number {
  const version = box.data[box.headerSize];
  if (version === undefined) throw new BoxFormatError(`'${box.type}' is empty`);
  return version;
}

function need(box: Box, bytes: number): Buffer {
  const body = payload(box);
  if (body.length < bytes) throw new BoxFormatError(`'${box.type}' is ${body.length} bytes, needs at least ${bytes}`);
  return body;
}

/** `tkhd` → track_ID. */
export function readTrackId(tkhd: Box): number {
  const offset = fullBoxVersion(tkhd) === 1 ? 20 : 12; // after version/flags + creation/modification times
  return need(tkhd, offset + 4).readUInt32BE(offset);
}

/** `mdhd` → timescale (ticks per second of the track's media time). */
export function readTimescale(mdhd: Box): number {
  const offset = fullBoxVersion(mdhd) === 1 ? 20 : 12;
  const timescale = need(mdhd, offset + 4).readUInt32BE(offset);
  if (timescale === 0) throw new BoxFormatError(`'mdhd' has timescale 0`);
  return timescale;
}

/** `hdlr` → handler type: 'vide', 'soun', ... */
export function readHandlerType(hdlr: Box): string {
  return need(hdlr, 12).toString('latin1', 8, 12); // after version/flags + pre_defined
}

/** `tfhd` → track_ID of the fragment's track. */
export function readFragmentTrackId(tfhd: Box): number {
  return need(tfhd, 8).readUInt32BE(4);
}

/** `tfdt` → baseMediaDecodeTime, in the track's timescale. */
export function readBaseMediaDecodeTime(tfdt: Box): bigint {
  const body = need(tfdt, fullBoxVersion(tfdt) === 1 ? 12 : 8);
  return fullBoxVersion(tfdt) === 1 ? body.readBigUInt64BE(4) : BigInt(body.readUInt32BE(4));
}

/**
 * Overwrite `tfdt.baseMediaDecodeTime` in place. A version-0 box has 32 bits: a value
 * that does not fit throws rather than wrapping, since a wrapped time would jump back.
 */
export function writeBaseMediaDecodeTime(tfdt: Box, value: bigint): void {
  if (value < 0n) throw new BoxFormatError(`baseMediaDecodeTime ${value} is negative`);
  if (fullBoxVersion(tfdt) === 1) {
    need(tfdt, 12).writeBigUInt64BE(value, 4);
    return;
  }
  if (value > MAX_UINT32) throw new BoxFormatError(`baseMediaDecodeTime ${value} does not fit a version-0 'tfdt'`);
  need(tfdt, 8).writeUInt32BE(Number(value), 4);
}

export interface TrackInfo {
  trackId: number;
  /** 'vide', 'soun', ... */
  handler: string;
  timescale: number;
}

/** The tracks described by a `moov` box, in order. */
export function readTracks(moov: Box): TrackInfo[] {
  return findChildren(moov, 'trak').map((trak) => {
    const tkhd = findChild(trak, 'tkhd');
    const mdhd = findPath(trak, ['mdia', 'mdhd']);
    const hdlr = findPath(trak, ['mdia', 'hdlr']);
    if (!tkhd || !mdhd || !hdlr) throw new BoxFormatError(`'trak' lacks tkhd, mdia/mdhd or mdia/hdlr`);
    return { trackId: readTrackId(tkhd), handler: readHandlerType(hdlr), timescale: readTimescale(mdhd) };
  });
}

/**
 * Add `offsets.get(trackId)` to the baseMediaDecodeTime of every `traf` in a `moof`,
 * in place. Tracks without an offset are left alone; a `traf` without `tfdt` has no
 * time to shift and is an error, since its samples would not move with the others.
 */
export function shiftFragmentTimes(moof: Box, offsets: ReadonlyMap<number, bigint>): void {
  for (const traf of findChildren(moof, 'traf')) {
    const tfhd = findChild(traf, 'tfhd');
    if (!tfhd) throw new BoxFormatError(`'traf' without 'tfhd'`);
    const offset = offsets.get(readFragmentTrackId(tfhd));
    if (offset === undefined || offset === 0n) continue;
    const tfdt = findChild(traf, 'tfdt');
    if (!tfdt) throw new BoxFormatError(`'traf' of track ${readFragmentTrackId(tfhd)} has no 'tfdt' to shift`);
    writeBaseMediaDecodeTime(tfdt, readBaseMediaDecodeTime(tfdt) + offset);
  }
}

export interface BoxSplitterOptions {
  /** Largest box accepted; a bigger declared size is treated as corruption. */
  maxBoxSize?: number;
}

/**
 * Turns a byte stream cut at arbitrary points into whole top-level boxes. A box that
 * arrived inside one chunk is returned as a subarray of it; only boxes that straddle
 * chunks are copied (once). A size-0 box ("to the end of the stream") is returned by
 * `end()`. Impossible sizes throw `BoxFormatError` instead of waiting for bytes that
 * will never make sense.
 */
export class BoxSplitter {
  private readonly maxBoxSize: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Header of the box being gathered, once known. */
  private current: BoxHeader | undefined;
  private failed: BoxFormatError | undefined;

  constructor(options: BoxSplitterOptions = {}) {
    this.maxBoxSize = options.maxBoxSize ?? 1 << 30;
  }

  /** Feed the next bytes; returns the boxes they completed, in order. */
  push(chunk: Buffer): Box[] {
    if (this.failed) throw this.failed;
    const boxes: Box[] = [];
    if (chunk.length === 0) return boxes;
    let rest = chunk;
    try {
      // Fast path: nothing pending, so whole boxes are subarrays of `chunk`.
      while (this.pendingBytes === 0 && rest.length > 0) {
        const header = readBoxHeader(rest, 0, this.maxBoxSize);
        if (!header || header.size === null || header.size > rest.length) break;
        boxes.push({ type: header.type, headerSize: header.headerSize, data: rest.subarray(0, header.size) });
        rest = rest.subarray(header.size);
      }
      if (rest.length === 0) return boxes;
      this.pending.push(rest);
      this.pendingBytes += rest.length;
      this.drainPending(boxes);
    } catch (error) {
      if (error instanceof BoxFormatError) this.failed = error;
      throw error;
    }
    return boxes;
  }

  /** The stream ended: returns a final size-0 box if one was open; throws if a box is cut short. */
  end(): Box[] {
    if (this.failed) throw this.failed;
    if (this.pendingBytes === 0) return [];
    const header = this.current ?? readBoxHeader(this.peek(16), 0, this.maxBoxSize);
    if (header && header.size === null) {
      const data = this.take(this.pendingBytes);
      return [{ type: header.type, headerSize: header.headerSize, data }];
    }
    const what = header ? `'${header.type}' box of ${header.size} bytes` : 'box header';
    this.failed = new BoxFormatError(`stream ended inside a ${what} (${this.pendingBytes} bytes buffered)`);
    throw this.failed;
  }

  /** Bytes received but not yet returned as a box. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  private drainPending(out: Box[]): void {
    while (this.pendingBytes > 0) {
      if (!this.current) {
        const header = readBoxHeader(this.peek(16), 0, this.maxBoxSize);
        if (!header) return;
        this.current = header;
      }
      const { size, type, headerSize } = this.current;
      if (size === null || this.pendingBytes < size) return;
      this.current = undefined;
      out.push({ type, headerSize, data: this.take(size) });
    }
  }

  /** Up to `n` leading pending bytes (copies only when they straddle chunks). */
  private peek(n: number): Buffer {
    const first = this.pending[0];
    if (!first) return Buffer.alloc(0);
    if (first.length >= n || this.pending.length === 1) return first.subarray(0, n);
    return Buffer.concat(this.pending, Math.min(n, this.pendingBytes)).subarray(0, n);
  }

  /** Remove and return the leading `n` pending bytes. */
  private take(n: number): Buffer {
    const first = this.pending[0];
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
      this.pendingBytes -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = this.pending[0];
      if (!head) throw new Error('BoxSplitter: took more bytes than pending'); // unreachable by construction
      const used = Math.min(head.length, n - filled);
      head.copy(out, filled, 0, used);
      filled += used;
      if (used === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(used);
    }
    this.pendingBytes -= n;
    return out;
  }
}
