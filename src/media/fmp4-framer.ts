/**
 * Re-frames ffmpeg's fragmented MP4 byte stream into what livegen sends: one init
 * chunk (`ftyp`+`moov`, carrying the derived MIME type), then one chunk per whole
 * `moof`+`mdat` pair. `mfra` and padding boxes are dropped; a browser has no use for
 * them and they are not fragments.
 */
import { mimeFromInitSegment } from './avc-mime.js';
import { type Box, BoxFormatError, BoxSplitter, iterateBoxes, readTracks, shiftFragmentTimes, type TrackInfo } from './boxes.js';
import type { OutputFramer } from './ffmpeg-pipeline.js';
import type { MediaChunk } from './types.js';

/** Boxes that carry nothing a player needs between fragments. */
const DROPPED = new Set(['mfra', 'free', 'skip']);

/**
 * One buffer spanning `parts`: a view when they sit back to back in one allocation
 * (the common case, since ffmpeg writes a fragment in one go), a copy otherwise.
 */
export function joinAdjacent(parts: readonly Buffer[]): Buffer {
  const first = parts[0];
  if (!first) return Buffer.alloc(0);
  let end = first.byteOffset + first.length;
  let contiguous = true;
  for (const part of parts.slice(1)) {
    if (part.buffer !== first.buffer || part.byteOffset !== end) {
      contiguous = false;
      break;
    }
    end += part.length;
  }
  if (contiguous) return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
  return Buffer.concat(parts);
}

export class Fmp4Framer implements OutputFramer {
  // A fragment is a fraction of a second of capped-bitrate video; a declared size past
  // this is corruption, better reported now than waited for.
  private readonly splitter = new BoxSplitter({ maxBoxSize: 256 * 1024 * 1024 });
  private ftyp: Box | undefined;
  private initSent = false;
  /** Boxes of the fragment being gathered (`moof` and anything a segment may put before it). */
  private fragmentParts: Box[] = [];
  private hasMoof = false;
  private tracksById = new Map<number, TrackInfo>();
  private mimeType: string | undefined;

  /** The MSE type string, once the init chunk went out. */
  get mime(): string | undefined {
    return this.mimeType;
  }

  /** The tracks of the init segment, once it went out. */
  get tracks(): ReadonlyMap<number, TrackInfo> {
    return this.tracksById;
  }

  push(data: Buffer): MediaChunk[] {
    const out: MediaChunk[] = [];
    for (const box of this.splitter.push(data)) this.accept(box, out);
    return out;
  }

  end(): MediaChunk[] {
    const out: MediaChunk[] = [];
    for (const box of this.splitter.end()) this.accept(box, out);
    if (!this.initSent) throw new BoxFormatError('stream ended without an init segment (ftyp+moov)');
    if (this.fragmentParts.length > 0) {
      throw new BoxFormatError(`stream ended inside a fragment (${this.fragmentParts.map((box) => box.type).join('+')} without mdat)`);
    }
    return out;
  }

  private accept(box: Box, out: MediaChunk[]): void {
    if (DROPPED.has(box.type)) return;
    if (!this.initSent) {
      this.acceptBeforeInit(box, out);
      return;
    }
    switch (box.type) {
      case 'moof':
        if (this.hasMoof) throw new BoxFormatError(`'moof' followed by 'moof' without 'mdat'`);
        this.hasMoof = true;
        this.fragmentParts.push(box);
        return;
      case 'mdat':
        if (!this.hasMoof) throw new BoxFormatError(`'mdat' without a preceding 'moof'`);
        this.fragmentParts.push(box);
        out.push({ kind: 'fragment', data: joinAdjacent(this.fragmentParts.map((part) => part.data)) });
        this.fragmentParts = [];
        this.hasMoof = false;
        return;
      case 'ftyp':
      case 'moov':
        throw new BoxFormatError(`a second '${box.type}' after the init segment`);
      default:
        // styp/sidx/prft/emsg and the like belong to the next media segment: keep them with it.
        if (this.hasMoof) throw new BoxFormatError(`'${box.type}' between 'moof' and 'mdat'`);
        this.fragmentParts.push(box);
    }
  }

  private acceptBeforeInit(box: Box, out: MediaChunk[]): void {
    if (box.type === 'ftyp') {
      this.ftyp = box;
      return;
    }
    if (box.type !== 'moov') throw new BoxFormatError(`'${box.type}' before the init segment was complete`);
    if (!this.ftyp) throw new BoxFormatError(`'moov' without a preceding 'ftyp'`);
    const data = joinAdjacent([this.ftyp.data, box.data]);
    for (const track of readTracks(box)) this.tracksById.set(track.trackId, track);
    this.mimeType = mimeFromInitSegment(data);
    this.initSent = true;
    out.push({ kind: 'init', data, mime: this.mimeType });
  }
}

/**
 * Moves a fragment's media times forward by `offsetMs`, in each track's own timescale.
 * Exact for whole milliseconds on the usual timescales (audio rates, 1000-multiples);
 * otherwise rounded to the nearest tick, the same for every fragment of the track.
 */
export function shiftFragment(fragment: Buffer, tracks: ReadonlyMap<number, TrackInfo>, offsetMs: number): void {
  const offsets = new Map<number, bigint>();
  for (const track of tracks.values()) offsets.set(track.trackId, BigInt(Math.round((offsetMs * track.timescale) / 1000)));
  for (const box of iterateBoxes(fragment)) if (box.type === 'moof') shiftFragmentTimes(box, offsets);
}
