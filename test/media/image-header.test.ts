import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkInitialImage,
  DEFAULT_IMAGE_LIMITS,
  type ImageFormat,
  ImageHeaderError,
  MAX_JPEG_FILL_BYTES,
  MAX_JPEG_SEGMENTS,
  readImageHeader,
} from '../../src/media/image-header.js';
import { run, tempDir } from './helpers.js';

const WIDTH = 321;
const HEIGHT = 239;

interface Sample {
  name: string;
  format: ImageFormat;
  mime: string;
  bytes: Buffer;
  /** The WebP first-chunk FourCC, to prove each chunk kind is covered. */
  chunk?: string;
}

const samples: Sample[] = [];
let cleanup: (() => Promise<void>) | undefined;

/** One frame of a test pattern at WIDTH x HEIGHT, encoded by ffmpeg with `args`. */
async function encode(dir: string, name: string, filter: string, args: string[]): Promise<Buffer> {
  const path = join(dir, name);
  await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', `testsrc=size=${WIDTH}x${HEIGHT}${filter}`, '-frames:v', '1', ...args, path]);
  return readFile(path);
}

beforeAll(async () => {
  const tmp = await tempDir();
  cleanup = tmp.cleanup;
  const { dir } = tmp;
  const alpha = ",format=rgba,geq=r='X':g='Y':b='128':a='X/2'";
  const add = (name: string, format: ImageFormat, mime: string, bytes: Buffer) => {
    samples.push({ name, format, mime, bytes, ...(format === 'webp' ? { chunk: bytes.subarray(12, 16).toString('latin1') } : {}) });
  };
  add('png rgb24', 'png', 'image/png', await encode(dir, 'rgb.png', '', []));
  add('png rgba', 'png', 'image/png', await encode(dir, 'rgba.png', alpha, []));
  add('png gray16', 'png', 'image/png', await encode(dir, 'gray16.png', '', ['-pix_fmt', 'gray16be']));
  add('png pal8', 'png', 'image/png', await encode(dir, 'pal8.png', '', ['-pix_fmt', 'pal8']));
  add('jpeg 4:2:0', 'jpeg', 'image/jpeg', await encode(dir, 'a.jpg', '', ['-c:v', 'mjpeg', '-pix_fmt', 'yuvj420p']));
  add('jpeg 4:4:4 as image/jpg', 'jpeg', 'image/jpg', await encode(dir, 'b.jpg', '', ['-c:v', 'mjpeg', '-pix_fmt', 'yuvj444p']));
  add('webp lossy', 'webp', 'image/webp', await encode(dir, 'lossy.webp', '', ['-c:v', 'libwebp', '-lossless', '0']));
  add('webp lossless', 'webp', 'image/webp', await encode(dir, 'lossless.webp', '', ['-c:v', 'libwebp', '-lossless', '1']));
  add('webp lossy+alpha', 'webp', 'image/webp', await encode(dir, 'alpha.webp', alpha, ['-c:v', 'libwebp', '-pix_fmt', 'yuva420p']));
});

afterAll(async () => {
  await cleanup?.();
});

function sample(name: string): Sample {
  const found = samples.find((s) => s.name === name);
  if (!found) throw new Error(`no sample ${name}`);
  return found;
}

/** The error readImageHeader throws, failing the test if it returns or throws anything else. */
function headerError(bytes: Buffer): ImageHeaderError {
  try {
    readImageHeader(bytes);
  } catch (error) {
    if (error instanceof ImageHeaderError) return error;
    throw error;
  }
  throw new Error('readImageHeader accepted the bytes');
}

/** A minimal PNG: signature and an IHDR with a correct CRC (no IDAT; only the header matters here). */
function pngHeader(width: number, height: number, bitDepth = 8, colourType = 2): Buffer {
  const ihdr = Buffer.alloc(4 + 13);
  ihdr.write('IHDR', 0, 'latin1');
  ihdr.writeUInt32BE(width, 4);
  ihdr.writeUInt32BE(height, 8);
  ihdr[12] = bitDepth;
  ihdr[13] = colourType;
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(ihdr));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(13);
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), length, ihdr, crc]);
}

/** A JPEG marker segment; `length` overrides the length field. */
function segment(marker: number, body: Buffer | number[], length?: number): Buffer {
  const data = Buffer.from(body);
  const head = Buffer.from([0xff, marker, 0, 0]);
  head.writeUInt16BE(length ?? data.length + 2, 2);
  return Buffer.concat([head, data]);
}

/** SOFn body: precision, Y, X, then `components` component specs. */
function sofBody(width: number, height: number, components = 3): Buffer {
  const body = Buffer.alloc(6 + 3 * components);
  body[0] = 8;
  body.writeUInt16BE(height, 1);
  body.writeUInt16BE(width, 3);
  body[5] = components;
  for (let i = 0; i < components; i++) body.set([i + 1, 0x11, 0], 6 + 3 * i);
  return body;
}

const SOI = Buffer.from([0xff, 0xd8]);

/** A hand-made WebP: RIFF header (size computed unless given) around one chunk. */
function webp(fourcc: string, data: Buffer, riffSize?: number): Buffer {
  const chunk = Buffer.alloc(8);
  chunk.write(fourcc, 0, 'latin1');
  chunk.writeUInt32LE(data.length, 4);
  const pad = data.length % 2 === 1 ? Buffer.alloc(1) : Buffer.alloc(0);
  const head = Buffer.alloc(12);
  head.write('RIFF', 0, 'latin1');
  head.writeUInt32LE(riffSize ?? 4 + 8 + data.length + pad.length, 4);
  head.write('WEBP', 8, 'latin1');
  return Buffer.concat([head, chunk, data, pad]);
}

/** VP8L header bits per the WebP lossless spec: 0x2F, then width-1 / height-1 (14 bits each), alpha, version. */
function vp8l(width: number, height: number, version = 0): Buffer {
  const data = Buffer.alloc(5);
  data[0] = 0x2f;
  data.writeUInt32LE(((width - 1) | ((height - 1) << 14) | (version << 29)) >>> 0, 1);
  return data;
}

/** VP8X chunk data: flags, reserved, canvas width-1 and height-1 as 24-bit little-endian. */
function vp8x(width: number, height: number): Buffer {
  const data = Buffer.alloc(10);
  data.writeUIntLE(width - 1, 4, 3);
  data.writeUIntLE(height - 1, 7, 3);
  return data;
}

/** VP8 key-frame header: 3-byte frame tag, start code, 14-bit width and height. */
function vp8(width: number, height: number): Buffer {
  const data = Buffer.alloc(10);
  data.set([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
  data.writeUInt16LE(width, 6);
  data.writeUInt16LE(height, 8);
  return data;
}

/** Where the JPEG's first SOFn segment ends, found independently of the code under test. */
function sofEnd(jpeg: Buffer): number {
  let pos = 2;
  for (;;) {
    const marker = jpeg[pos + 1] ?? 0;
    const end = pos + 2 + jpeg.readUInt16BE(pos + 2);
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) return end;
    pos = end;
  }
}

describe('readImageHeader on real images', () => {
  it('covers every WebP first-chunk kind', () => {
    expect(samples.filter((s) => s.format === 'webp').map((s) => s.chunk).sort()).toEqual(['VP8 ', 'VP8L', 'VP8X']);
  });

  it('reads format and size of every ffmpeg-made image', () => {
    expect(samples).toHaveLength(9);
    for (const s of samples) {
      expect(readImageHeader(s.bytes), s.name).toEqual({
        format: s.format,
        mime: s.format === 'jpeg' ? 'image/jpeg' : `image/${s.format}`,
        width: WIDTH,
        height: HEIGHT,
      });
      expect(checkInitialImage(s.bytes, s.mime), s.name).toBeUndefined();
    }
  });

  it('accepts any case of the declared MIME type and image/jpg for JPEG', () => {
    expect(checkInitialImage(sample('png rgb24').bytes, 'IMAGE/PNG')).toBeUndefined();
    expect(checkInitialImage(sample('jpeg 4:2:0').bytes, 'image/jpg')).toBeUndefined();
    expect(checkInitialImage(sample('jpeg 4:2:0').bytes, 'image/jpeg')).toBeUndefined();
  });

  it('ignores a frame header inside an APP1 segment (an EXIF thumbnail) and reads the real one', () => {
    const jpeg = sample('jpeg 4:2:0').bytes;
    const thumbnail = Buffer.concat([SOI, segment(0xc0, sofBody(160, 120)), Buffer.from([0xff, 0xd9])]);
    const app1 = segment(0xe1, Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), thumbnail]));
    const withExif = Buffer.concat([SOI, app1, jpeg.subarray(2)]);
    expect(readImageHeader(withExif)).toMatchObject({ width: WIDTH, height: HEIGHT });
  });

  it('skips fill bytes and standalone markers before a marker', () => {
    const jpeg = Buffer.concat([SOI, Buffer.from([0xff, 0xff, 0xff, 0xd0, 0xff, 0x01]), segment(0xdb, [0, 1, 2]), segment(0xc2, sofBody(640, 480))]);
    expect(readImageHeader(jpeg)).toMatchObject({ format: 'jpeg', width: 640, height: 480 });
  });

  it('recognises every SOFn and nothing else as a frame header', () => {
    const sofs = [0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf];
    for (const marker of sofs) {
      expect(readImageHeader(Buffer.concat([SOI, segment(marker, sofBody(7, 5, 1))])), marker.toString(16)).toMatchObject({ width: 7, height: 5 });
    }
    // DHT, JPG and DAC share the C0-CF range but are skipped; the SOF after them is used.
    for (const marker of [0xc4, 0xc8, 0xcc]) {
      const jpeg = Buffer.concat([SOI, segment(marker, sofBody(9999, 9999, 1)), segment(0xc0, sofBody(7, 5, 1))]);
      expect(readImageHeader(jpeg), marker.toString(16)).toMatchObject({ width: 7, height: 5 });
    }
  });
});

describe('checkInitialImage: declared type', () => {
  it('reports a mismatch between the declared MIME type and the bytes', () => {
    const names: Record<ImageFormat, string> = { png: 'PNG', jpeg: 'JPEG', webp: 'WebP' };
    const mimes = ['image/png', 'image/jpeg', 'image/jpg', 'image/webp'];
    for (const s of samples) {
      for (const mime of mimes) {
        const declared: ImageFormat = mime === 'image/jpg' ? 'jpeg' : (mime.slice(6) as ImageFormat);
        const reason = checkInitialImage(s.bytes, mime);
        if (declared === s.format) expect(reason, `${s.name} as ${mime}`).toBeUndefined();
        else expect(reason).toBe(`initial_image.data: not a ${names[declared]} image (declared ${mime}, found ${names[s.format]})`);
      }
    }
  });

  it('matches the example reason', () => {
    expect(checkInitialImage(sample('jpeg 4:2:0').bytes, 'image/png')).toBe('initial_image.data: not a PNG image (declared image/png, found JPEG)');
  });

  it('refuses bytes that are no image at all', () => {
    expect(checkInitialImage(Buffer.from('GIF89a\x01\x00\x01\x00', 'latin1'), 'image/png')).toBe('initial_image.data: not an image (unknown signature)');
    expect(checkInitialImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'), 'image/webp')).toBe('initial_image.data: not an image (unknown signature)');
    expect(checkInitialImage(Buffer.alloc(0), 'image/jpeg')).toBe('initial_image.data: not an image (no data)');
    // RIFF, but WAVE rather than WEBP.
    const wav = Buffer.concat([Buffer.from('RIFF', 'latin1'), Buffer.from([36, 0, 0, 0]), Buffer.from('WAVEfmt ', 'latin1'), Buffer.alloc(28)]);
    expect(headerError(wav).code).toBe('unknown_signature');
  });

  it('refuses an unsupported declared MIME type, escaping it', () => {
    expect(checkInitialImage(sample('png rgb24').bytes, 'image/gif')).toBe('initial_image.mime: unsupported image type "image/gif"');
    expect(checkInitialImage(sample('png rgb24').bytes, 'image/\u0000\n' + 'x'.repeat(100))).toMatch(/^initial_image\.mime: unsupported image type "image\/\?\?x+\.\.\."$/);
  });
});

describe('checkInitialImage: truncation', () => {
  it('gives a reason for every prefix shorter than the header, and readImageHeader throws only ImageHeaderError', () => {
    for (const s of samples) {
      // The header's end: IHDR with its CRC; the end of the first SOFn; for WebP the whole file (RIFF size).
      const headerEnd = s.format === 'png' ? 33 : s.format === 'jpeg' ? sofEnd(s.bytes) : s.bytes.length;
      for (let length = 0; length < headerEnd; length++) {
        const prefix = s.bytes.subarray(0, length);
        const error = headerError(prefix);
        expect(error.code, `${s.name} at ${length}`).toBe(length === 0 ? 'unknown_signature' : 'truncated');
        const reason = checkInitialImage(prefix, s.mime);
        expect(reason, `${s.name} at ${length}`).toBe(
          length === 0 ? 'initial_image.data: not an image (no data)' : `initial_image.data: ${error.message}`,
        );
        expect(reason).toMatch(length === 0 ? /no data/ : /^initial_image\.data: truncated (PNG|JPEG|WebP) header/);
      }
      expect(checkInitialImage(s.bytes.subarray(0, headerEnd), s.mime), s.name).toBeUndefined();
    }
  });

  it('says "truncated PNG header" for a short PNG', () => {
    expect(checkInitialImage(sample('png rgb24').bytes.subarray(0, 20), 'image/png')).toBe('initial_image.data: truncated PNG header');
  });

  it('refuses a WebP whose RIFF size exceeds the data', () => {
    const bytes = Buffer.from(sample('webp lossless').bytes);
    bytes.writeUInt32LE(bytes.length, 4); // 8 more than present
    expect(headerError(bytes)).toMatchObject({ code: 'truncated', message: `truncated WebP header (RIFF size ${bytes.length} exceeds the ${bytes.length - 8} bytes present)` });
  });

  it('accepts data after the RIFF size (trailing bytes)', () => {
    const bytes = Buffer.concat([webp('VP8L', vp8l(10, 20)), Buffer.from('trailing')]);
    expect(readImageHeader(bytes)).toMatchObject({ width: 10, height: 20 });
  });
});

describe('checkInitialImage: dimensions', () => {
  it('refuses a PNG whose IHDR declares 70000x70000 (CRC fixed up)', () => {
    const bytes = Buffer.from(sample('png rgb24').bytes);
    bytes.writeUInt32BE(70000, 16);
    bytes.writeUInt32BE(70000, 20);
    bytes.writeUInt32BE(crc32(bytes.subarray(12, 29)), 29);
    expect(readImageHeader(bytes)).toMatchObject({ width: 70000, height: 70000 });
    expect(checkInitialImage(bytes, 'image/png')).toBe('initial_image.data: image is 70000x70000, larger than 16384x16384');
  });

  it('refuses a patched header without fixing the CRC as malformed', () => {
    const bytes = Buffer.from(sample('png rgb24').bytes);
    bytes.writeUInt32BE(70000, 16);
    expect(checkInitialImage(bytes, 'image/png')).toBe('initial_image.data: malformed PNG header (IHDR CRC mismatch)');
  });

  it('refuses a JPEG whose SOF declares 65535x65535', () => {
    const bytes = Buffer.from(sample('jpeg 4:2:0').bytes);
    const end = sofEnd(bytes);
    const sofStart = end - (8 + 3 * 3) - 2; // three components
    expect(bytes[sofStart]).toBe(0xff);
    bytes.writeUInt16BE(65535, sofStart + 5);
    bytes.writeUInt16BE(65535, sofStart + 7);
    expect(checkInitialImage(bytes, 'image/jpeg')).toBe('initial_image.data: image is 65535x65535, larger than 16384x16384');
  });

  it('refuses a WebP whose VP8X canvas is 60000x60000', () => {
    const bytes = Buffer.from(sample('webp lossy+alpha').bytes);
    bytes.writeUIntLE(60000 - 1, 24, 3);
    bytes.writeUIntLE(60000 - 1, 27, 3);
    expect(checkInitialImage(bytes, 'image/webp')).toBe('initial_image.data: image is 60000x60000, larger than 16384x16384');
  });

  it('refuses a VP8X canvas beyond the 2^32-1 pixel bound of the container spec', () => {
    expect(headerError(webp('VP8X', vp8x(2 ** 24, 2 ** 24))).message).toBe('malformed WebP header (canvas 16777216x16777216 exceeds 2^32-1 pixels)');
  });

  it('reads hand-made VP8, VP8L and VP8X headers, including the largest VP8L size', () => {
    expect(readImageHeader(webp('VP8L', vp8l(16384, 16384)))).toMatchObject({ width: 16384, height: 16384 });
    expect(readImageHeader(webp('VP8L', vp8l(1, 1)))).toMatchObject({ width: 1, height: 1 });
    expect(readImageHeader(webp('VP8X', vp8x(1000, 2000)))).toMatchObject({ width: 1000, height: 2000 });
    expect(readImageHeader(webp('VP8 ', vp8(16383, 3)))).toMatchObject({ width: 16383, height: 3 });
    // The top two bits of VP8's size fields are upscaling hints, not size.
    expect(readImageHeader(webp('VP8 ', vp8(0xc000 | 640, 0x4000 | 480)))).toMatchObject({ width: 640, height: 480 });
  });

  it('applies per-side and pixel-count limits, inclusive', () => {
    const limits = { maxWidth: 4000, maxHeight: 3000, maxPixels: 10_000_000 };
    expect(checkInitialImage(pngHeader(4000, 2500), 'image/png', limits)).toBeUndefined();
    expect(checkInitialImage(pngHeader(4001, 10), 'image/png', limits)).toBe('initial_image.data: image is 4001x10, larger than 4000x3000');
    expect(checkInitialImage(pngHeader(10, 3001), 'image/png', limits)).toBe('initial_image.data: image is 10x3001, larger than 4000x3000');
    expect(checkInitialImage(pngHeader(4000, 2501), 'image/png', limits)).toBe(
      'initial_image.data: image is 4000x2501 (10004000 pixels), more than 10000000 pixels',
    );
    expect(checkInitialImage(pngHeader(16384, 16384), 'image/png')).toBeUndefined();
    expect(checkInitialImage(pngHeader(16385, 1), 'image/png')).toMatch(/larger than 16384x16384/);
    expect(DEFAULT_IMAGE_LIMITS).toEqual({ maxWidth: 16384, maxHeight: 16384, maxPixels: 2 ** 28 });
    expect(Object.isFrozen(DEFAULT_IMAGE_LIMITS)).toBe(true);
  });

  it('refuses zero and out-of-range sizes as malformed', () => {
    expect(headerError(pngHeader(0, 10)).message).toBe('malformed PNG header (invalid size 0x10)');
    expect(headerError(pngHeader(2 ** 31, 10)).code).toBe('malformed');
    expect(headerError(Buffer.concat([SOI, segment(0xc0, sofBody(640, 0))])).message).toBe('malformed JPEG header (invalid size 640x0)');
    expect(headerError(webp('VP8 ', vp8(0, 10))).code).toBe('malformed');
  });
});

describe('malformed headers', () => {
  it('PNG: IHDR must come first, with length 13 and a valid bit depth', () => {
    const notFirst = Buffer.from(pngHeader(10, 10));
    notFirst.write('tEXt', 12, 'latin1');
    expect(headerError(notFirst).message).toBe('malformed PNG header (first chunk is "tEXt", not IHDR)');
    const binaryType = Buffer.from(pngHeader(10, 10));
    binaryType.set([0, 0xff, 0x22, 1], 12);
    expect(headerError(binaryType).message).toBe('malformed PNG header (first chunk is 0x00ff2201, not IHDR)');
    const longIhdr = Buffer.from(pngHeader(10, 10));
    longIhdr.writeUInt32BE(0xffffffff, 8);
    expect(headerError(longIhdr).message).toBe('malformed PNG header (IHDR length is 4294967295, not 13)');
    expect(headerError(pngHeader(10, 10, 16, 3)).message).toBe('malformed PNG header (bit depth 16 with colour type 3)');
    expect(headerError(pngHeader(10, 10, 8, 5)).code).toBe('malformed');
  });

  it('JPEG: bad lengths, scans and ends before the frame header', () => {
    expect(headerError(Buffer.concat([SOI, segment(0xe0, [], 1)])).message).toBe('malformed JPEG header (segment at byte 2 has length 1)');
    expect(headerError(Buffer.concat([SOI, segment(0xda, [1, 1, 0, 0, 63, 0])])).message).toBe('malformed JPEG header (scan before the frame header)');
    expect(headerError(Buffer.concat([SOI, Buffer.from([0xff, 0xd9])])).code).toBe('malformed');
    expect(headerError(Buffer.concat([SOI, Buffer.from([0xff, 0xd8])])).code).toBe('malformed');
    expect(headerError(Buffer.concat([SOI, Buffer.from([0xff, 0x00])])).message).toBe('malformed JPEG header (unknown marker 0xff00 at byte 2)');
    expect(headerError(Buffer.concat([SOI, segment(0xe0, [1]), Buffer.from([0x12, 0x34])])).message).toBe('malformed JPEG header (expected a marker at byte 7)');
    // SOF length must agree with its component count.
    expect(headerError(Buffer.concat([SOI, segment(0xc0, sofBody(8, 8, 3), 12)])).code).toBe('malformed');
    expect(headerError(Buffer.concat([SOI, segment(0xc0, sofBody(8, 8, 0))])).code).toBe('malformed');
  });

  it('WebP: unknown first chunk, undersized chunks, chunk past the RIFF size, bad VP8/VP8L signatures', () => {
    expect(headerError(webp('ALPH', Buffer.alloc(10))).message).toBe('malformed WebP header (first chunk is "ALPH", not VP8, VP8L or VP8X)');
    expect(headerError(webp('VP8X', Buffer.alloc(4))).message).toBe('malformed WebP header (VP8X chunk size 4)');
    const longChunk = webp('VP8L', vp8l(10, 10));
    longChunk.writeUInt32LE(1000, 16);
    expect(headerError(longChunk).message).toBe('malformed WebP header ("VP8L" chunk size 1000 exceeds the RIFF size)');
    const badSignature = vp8l(10, 10);
    badSignature[0] = 0x2e;
    expect(headerError(webp('VP8L', badSignature)).code).toBe('malformed');
    expect(headerError(webp('VP8L', vp8l(10, 10, 1))).message).toBe('malformed WebP header (VP8L version 1)');
    const interFrame = vp8(10, 10);
    interFrame[0] = 0x11;
    expect(headerError(webp('VP8 ', interFrame)).code).toBe('malformed');
    const noStartCode = vp8(10, 10);
    noStartCode[4] = 0;
    expect(headerError(webp('VP8 ', noStartCode)).code).toBe('malformed');
    expect(headerError(webp('VP8L', vp8l(10, 10), 8)).message).toBe('malformed WebP header (RIFF size 8 leaves no room for a chunk)');
  });
});

describe('bounded work', () => {
  it(`walks at most ${MAX_JPEG_SEGMENTS} JPEG segments before the frame header`, () => {
    const app = segment(0xe0, []);
    const under = Buffer.concat([SOI, ...Array.from({ length: MAX_JPEG_SEGMENTS - 1 }, () => app), segment(0xc0, sofBody(64, 48))]);
    expect(readImageHeader(under)).toMatchObject({ width: 64, height: 48 });
    const over = Buffer.concat([SOI, ...Array.from({ length: MAX_JPEG_SEGMENTS }, () => app), segment(0xc0, sofBody(64, 48))]);
    expect(headerError(over)).toMatchObject({ code: 'too_complex', format: 'jpeg' });
    expect(checkInitialImage(over, 'image/jpeg')).toBe(`initial_image.data: JPEG has more than ${MAX_JPEG_SEGMENTS} marker segments before its frame header`);
  });

  it('refuses a JPEG of a million tiny APPn segments quickly', () => {
    const count = 1_000_000;
    const bytes = Buffer.alloc(2 + 4 * count + 19);
    SOI.copy(bytes, 0);
    for (let i = 0; i < count; i++) bytes.set([0xff, 0xe0 + (i % 16), 0x00, 0x02], 2 + 4 * i);
    segment(0xc0, sofBody(64, 48)).copy(bytes, 2 + 4 * count);
    const started = performance.now();
    expect(headerError(bytes).code).toBe('too_complex');
    expect(performance.now() - started).toBeLessThan(250);
  });

  it(`allows at most ${MAX_JPEG_FILL_BYTES} fill bytes`, () => {
    const fill = (n: number) => Buffer.concat([SOI, Buffer.alloc(n, 0xff), segment(0xc0, sofBody(64, 48))]);
    expect(readImageHeader(fill(MAX_JPEG_FILL_BYTES))).toMatchObject({ width: 64, height: 48 });
    expect(headerError(fill(MAX_JPEG_FILL_BYTES + 1)).code).toBe('too_complex');
    const started = performance.now();
    expect(headerError(fill(8 * 1024 * 1024)).code).toBe('too_complex');
    expect(performance.now() - started).toBeLessThan(250);
  });

  it('reads no further than the header of a large image', () => {
    // A valid header followed by 8 MiB of junk costs the same as the header alone.
    const junk = Buffer.alloc(8 * 1024 * 1024, 0xab);
    for (const s of samples.filter((x) => x.format !== 'webp')) {
      const bytes = Buffer.concat([s.bytes, junk]);
      const started = performance.now();
      expect(checkInitialImage(bytes, s.mime)).toBeUndefined();
      expect(performance.now() - started).toBeLessThan(250);
    }
  });
});

describe('hostile input (property-based)', () => {
  /** readImageHeader returns a sane header or throws ImageHeaderError; checkInitialImage never throws. */
  function survives(bytes: Buffer): void {
    try {
      const header = readImageHeader(bytes);
      expect(Number.isInteger(header.width) && header.width >= 1).toBe(true);
      expect(Number.isInteger(header.height) && header.height >= 1).toBe(true);
      expect(header.mime).toBe(header.format === 'jpeg' ? 'image/jpeg' : `image/${header.format}`);
    } catch (error) {
      expect(error).toBeInstanceOf(ImageHeaderError);
    }
    for (const mime of ['image/png', 'image/jpeg', 'image/webp']) {
      const reason = checkInitialImage(bytes, mime);
      expect(reason === undefined || /^initial_image\.data: [\x20-\x7e]+$/.test(reason)).toBe(true);
    }
  }

  it('survives random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), (array) => survives(Buffer.from(array))), { numRuns: 2000 });
  });

  it('survives random bytes after each signature', () => {
    const prefixes = [
      Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'),
      Buffer.from('ffd8ff', 'hex'),
      Buffer.from('ffd8ffe0', 'hex'),
      Buffer.concat([Buffer.from('RIFF', 'latin1'), Buffer.from([0xff, 0, 0, 0]), Buffer.from('WEBPVP8', 'latin1')]),
      Buffer.concat([Buffer.from('RIFF', 'latin1'), Buffer.from([24, 0, 0, 0]), Buffer.from('WEBPVP8X', 'latin1')]),
    ];
    fc.assert(
      fc.property(fc.constantFrom(...prefixes), fc.uint8Array({ maxLength: 64 }), (prefix, tail) => survives(Buffer.concat([prefix, tail]))),
      { numRuns: 3000 },
    );
  });

  it('survives random byte changes in the headers of real images', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: samples.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.nat(),
        (index, edits, cut) => {
          const original = (samples[index] as Sample).bytes;
          const headerSpan = Math.min(original.length, 700);
          const bytes = Buffer.from(original.subarray(0, Math.max(1, cut % (headerSpan + 1))));
          for (const [at, value] of edits) bytes[at % bytes.length] = value;
          survives(bytes);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('survives JPEG segment soup', () => {
    const marker = fc.integer({ min: 0, max: 255 });
    const piece = fc.oneof(
      fc.tuple(marker, fc.uint8Array({ maxLength: 12 })).map(([m, body]) => segment(m, Buffer.from(body))),
      fc.tuple(marker, fc.integer({ min: 0, max: 0xffff })).map(([m, length]) => Buffer.from([0xff, m, length >> 8, length & 0xff])),
      fc.constant(Buffer.from([0xff, 0xff])),
      fc.constantFrom(...[0xc0, 0xc2, 0xcf].map((m) => segment(m, sofBody(100, 100)))),
    );
    fc.assert(fc.property(fc.array(piece, { maxLength: 20 }), (pieces) => survives(Buffer.concat([SOI, ...pieces]))), { numRuns: 3000 });
  });
});
