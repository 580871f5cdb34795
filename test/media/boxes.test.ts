import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Box,
  BoxFormatError,
  BoxSplitter,
  childBoxes,
  findPath,
  readBaseMediaDecodeTime,
  readHandlerType,
  readTimescale,
  readTrackId,
  readTracks,
  shiftFragmentTimes,
  writeBaseMediaDecodeTime,
} from '../../src/media/boxes.js';
import { feedInPieces } from './feed.js';

function box(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const header = Buffer.alloc(8);
  header.writeUInt32BE(8 + body.length, 0);
  header.write(type, 4, 'latin1');
  return Buffer.concat([header, body]);
}

/** A box with `size == 1` and a 64-bit largesize. */
function box64(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(1, 0);
  header.write(type, 4, 'latin1');
  header.writeBigUInt64BE(BigInt(16 + body.length), 8);
  return Buffer.concat([header, body]);
}

function fullBox(type: string, version: number, body: Buffer): Buffer {
  return box(type, Buffer.from([version, 0, 0, 0]), body);
}

function u32(...values: number[]): Buffer {
  const out = Buffer.alloc(values.length * 4);
  values.forEach((value, i) => out.writeUInt32BE(value, i * 4));
  return out;
}

function u64(value: bigint): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(value);
  return out;
}

function trak(trackId: number, handler: string, timescale: number, version: 0 | 1): Buffer {
  const times = version === 1 ? Buffer.concat([u64(0n), u64(0n)]) : u32(0, 0);
  const tkhd = fullBox('tkhd', version, Buffer.concat([times, u32(trackId), Buffer.alloc(60)]));
  const mdhd = fullBox('mdhd', version, Buffer.concat([times, u32(timescale), version === 1 ? u64(0n) : u32(0), Buffer.alloc(4)]));
  const hdlr = fullBox('hdlr', 0, Buffer.concat([u32(0), Buffer.from(handler, 'latin1'), Buffer.alloc(12), Buffer.from('name\0')]));
  return box('trak', tkhd, box('mdia', mdhd, hdlr));
}

function traf(trackId: number, tfdtVersion: 0 | 1, time: bigint): Buffer {
  const tfhd = fullBox('tfhd', 0, u32(trackId));
  const tfdt = fullBox('tfdt', tfdtVersion, tfdtVersion === 1 ? u64(time) : u32(Number(time)));
  return box('traf', tfhd, tfdt, fullBox('trun', 0, u32(0)));
}

function asBox(data: Buffer): Box {
  const size = data.readUInt32BE(0);
  return { type: data.toString('latin1', 4, 8), headerSize: size === 1 ? 16 : 8, data };
}

/** Feed `stream` in pieces cut at `cuts` and collect every box (including what `end()` returns). */
function splitAt(stream: Buffer, cuts: number[]): Box[] {
  return feedInPieces(new BoxSplitter(), stream, cuts);
}

const moov = box('moov', fullBox('mvhd', 0, Buffer.alloc(96)), trak(1, 'vide', 12288, 0), trak(2, 'soun', 48000, 1));
const sample = [
  box('ftyp', Buffer.from('iso5\0\0\x02\0iso5iso6mp41', 'latin1')),
  moov,
  box('moof', fullBox('mfhd', 0, u32(1)), traf(1, 1, 0n)),
  box64('mdat', Buffer.from('sixty-four bit sized payload')),
  box('uuid', Buffer.alloc(16, 0xab), Buffer.from('user box')),
];
const stream = Buffer.concat(sample);

describe('BoxSplitter', () => {
  it('emits the same whole boxes wherever the stream is cut', () => {
    const expected = sample.map((b) => b.toString('hex'));
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(splitAt(stream, [cut]).map((b) => b.data.toString('hex'))).toEqual(expected);
    }
  });

  it('emits the same boxes when every byte arrives alone', () => {
    const cuts = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    expect(splitAt(stream, cuts).map((b) => b.data)).toEqual(sample);
  });

  it('emits the same boxes for random box sequences cut at random places', () => {
    const boxArb = fc.record({
      type: fc.constantFrom('moof', 'mdat', 'free', 'abcd'),
      body: fc.uint8Array({ maxLength: 64 }),
      large: fc.boolean(),
    }).map(({ type, body, large }) => (large ? box64(type, Buffer.from(body)) : box(type, Buffer.from(body))));
    fc.assert(
      fc.property(fc.array(boxArb, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (boxes, rawCuts) => {
        const bytes = Buffer.concat(boxes);
        const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        expect(splitAt(bytes, cuts).map((b) => b.data)).toEqual(boxes);
      }),
    );
  });

  it('reads the 64-bit largesize and reports a 16-byte header', () => {
    const [ftypBox, , , mdat] = splitAt(stream, []);
    expect(ftypBox?.headerSize).toBe(8);
    expect(mdat?.type).toBe('mdat');
    expect(mdat?.headerSize).toBe(16);
    expect(mdat?.data.subarray(16).toString()).toBe('sixty-four bit sized payload');
  });

  it('returns boxes that arrived whole as views of the chunk, not copies', () => {
    const chunk = Buffer.concat(sample);
    const boxes = new BoxSplitter().push(chunk);
    expect(boxes).toHaveLength(sample.length);
    for (const b of boxes) expect(b.data.buffer).toBe(chunk.buffer);
  });

  it('treats a size-0 box as running to the end of the stream', () => {
    const open = Buffer.concat([u32(0), Buffer.from('mdat'), Buffer.from('rest of the stream')]);
    const splitter = new BoxSplitter();
    expect(splitter.push(Buffer.concat([sample[0] as Buffer, open.subarray(0, 10)]))).toHaveLength(1);
    expect(splitter.push(open.subarray(10))).toEqual([]);
    const [last] = splitter.end();
    expect(last?.type).toBe('mdat');
    expect(last?.data).toEqual(open);
  });

  it('rejects a size smaller than the header instead of looping', () => {
    const corrupt = Buffer.concat([sample[0] as Buffer, u32(4), Buffer.from('moof'), Buffer.alloc(32)]);
    const splitter = new BoxSplitter();
    expect(() => splitter.push(corrupt)).toThrow(BoxFormatError);
    // Once desynchronised, the splitter stays failed rather than guessing.
    expect(() => splitter.push(Buffer.alloc(8))).toThrow(BoxFormatError);
  });

  it('rejects a corrupt size even when the header arrives byte by byte', () => {
    const corrupt = Buffer.concat([u32(3), Buffer.from('moof')]);
    const splitter = new BoxSplitter();
    expect(() => {
      for (let i = 0; i < corrupt.length; i++) splitter.push(corrupt.subarray(i, i + 1));
    }).toThrow(/smaller than its 8-byte header/);
  });

  it('rejects a largesize smaller than its 16-byte header', () => {
    const corrupt = Buffer.concat([u32(1), Buffer.from('mdat'), u64(12n)]);
    expect(() => new BoxSplitter().push(corrupt)).toThrow(BoxFormatError);
  });

  it('rejects a size beyond the limit instead of waiting for it', () => {
    const huge = Buffer.concat([u32(0xfffffff0), Buffer.from('mdat')]);
    expect(() => new BoxSplitter({ maxBoxSize: 1 << 20 }).push(huge)).toThrow(/above the 1048576-byte limit/);
  });

  it('rejects bytes that are not a box type', () => {
    expect(() => new BoxSplitter().push(Buffer.from([0, 0, 0, 16, 0xff, 0x00, 0x13, 0x37, 0, 0, 0, 0, 0, 0, 0, 0]))).toThrow(/unprintable type/);
  });

  it('reports a stream that ends inside a box', () => {
    const splitter = new BoxSplitter();
    splitter.push(stream.subarray(0, stream.length - 3));
    expect(() => splitter.end()).toThrow(/stream ended inside a 'uuid' box/);
  });
});

describe('box readers', () => {
  it('walks containers and reads track id, timescale and handler of either version', () => {
    expect(readTracks(asBox(moov))).toEqual([
      { trackId: 1, handler: 'vide', timescale: 12288 },
      { trackId: 2, handler: 'soun', timescale: 48000 },
    ]);
    const [, firstTrak] = [...childBoxes(asBox(moov))];
    const tkhd = findPath(firstTrak as Box, ['tkhd']);
    const mdhd = findPath(firstTrak as Box, ['mdia', 'mdhd']);
    const hdlr = findPath(firstTrak as Box, ['mdia', 'hdlr']);
    expect(tkhd && readTrackId(tkhd)).toBe(1);
    expect(mdhd && readTimescale(mdhd)).toBe(12288);
    expect(hdlr && readHandlerType(hdlr)).toBe('vide');
  });

  it('children are views into the parent, so edits write through', () => {
    const data = Buffer.from(box('moof', traf(7, 1, 5n)));
    const tfdt = findPath(asBox(data), ['traf', 'tfdt']) as Box;
    writeBaseMediaDecodeTime(tfdt, 99n);
    expect(readBaseMediaDecodeTime(findPath(asBox(data), ['traf', 'tfdt']) as Box)).toBe(99n);
  });

  it('writes a 64-bit baseMediaDecodeTime into a version-1 tfdt', () => {
    const tfdt = asBox(fullBox('tfdt', 1, u64(0n)));
    writeBaseMediaDecodeTime(tfdt, 2n ** 40n + 3n);
    expect(readBaseMediaDecodeTime(tfdt)).toBe(2n ** 40n + 3n);
  });

  it('writes a version-0 tfdt only when the value fits 32 bits', () => {
    const tfdt = asBox(fullBox('tfdt', 0, u32(0)));
    writeBaseMediaDecodeTime(tfdt, 0xffff_ffffn);
    expect(readBaseMediaDecodeTime(tfdt)).toBe(0xffff_ffffn);
    expect(() => writeBaseMediaDecodeTime(tfdt, 0x1_0000_0000n)).toThrow(BoxFormatError);
    expect(readBaseMediaDecodeTime(tfdt)).toBe(0xffff_ffffn);
  });

  it('shifts each traf by its own track offset', () => {
    const moof = asBox(Buffer.from(box('moof', fullBox('mfhd', 0, u32(1)), traf(1, 1, 512n), traf(2, 0, 1024n))));
    shiftFragmentTimes(moof, new Map([[1, 24576n], [2, 96000n]]));
    const times = [...childBoxes(moof)]
      .filter((b) => b.type === 'traf')
      .map((t) => readBaseMediaDecodeTime(findPath(t, ['tfdt']) as Box));
    expect(times).toEqual([25088n, 97024n]);
  });

  it('rejects a child box that overruns its parent', () => {
    const broken = box('moov', Buffer.concat([u32(100), Buffer.from('trak')]));
    expect(() => [...childBoxes(asBox(broken))]).toThrow(/overruns its container/);
  });
});
