import { describe, expect, it } from 'vitest';
import { JpegFormatError, JpegSplitter } from '../../src/media/jpeg-splitter.js';
import { feedInPieces } from './feed.js';

function segment(marker: number, body: number[]): number[] {
  const length = body.length + 2;
  return [0xff, marker, length >> 8, length & 0xff, ...body];
}

/** A structurally valid JPEG whose APP1 payload contains FFD9 and whose scan has stuffing, restarts and fill bytes. */
function fakeJpeg(seed: number): Buffer {
  return Buffer.from([
    0xff, 0xd8,
    ...segment(0xe1, [0x45, 0x78, 0x69, 0x66, 0, 0, 0xff, 0xd8, 0xff, 0xd9, seed]), // "Exif" + an embedded thumbnail's SOI/EOI
    ...segment(0xdb, [0, ...Array.from({ length: 8 }, (_, i) => (i + seed) & 0x7f)]),
    ...segment(0xda, [1, 1, 0, 0, 63, 0]),
    seed, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56, 0xff, 0x00, 0xff, 0xd7, 0x78,
    0xff, 0xff, 0xd9, // a fill byte, then EOI
  ]);
}

function split(stream: Buffer, cuts: number[]): Buffer[] {
  return feedInPieces(new JpegSplitter(), stream, cuts);
}

describe('JpegSplitter', () => {
  const images = [fakeJpeg(1), fakeJpeg(2), fakeJpeg(3)];
  const stream = Buffer.concat(images);
  const expected = images.map((image) => image.toString('hex'));

  it('splits concatenated JPEGs into whole images wherever the stream is cut', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(split(stream, [cut]).map((image) => image.toString('hex'))).toEqual(expected);
    }
  });

  it('splits correctly when every byte arrives alone', () => {
    const cuts = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    expect(split(stream, cuts).map((image) => image.toString('hex'))).toEqual(expected);
  });

  it('does not end an image at an FFD9 inside a marker segment', () => {
    const [first] = split(images[0] as Buffer, []);
    expect(first?.length).toBe(images[0]?.length);
  });

  it('rejects a stream that does not start with SOI', () => {
    expect(() => new JpegSplitter().push(Buffer.from([0x00, 0x01, 0x02]))).toThrow(JpegFormatError);
  });

  it('reports a stream that ends inside an image', () => {
    const splitter = new JpegSplitter();
    splitter.push(stream.subarray(0, stream.length - 1));
    expect(() => splitter.end()).toThrow(/ended inside an image/);
  });
});
