/**
 * Splits a stream of concatenated JPEGs (ffmpeg's image2pipe) into whole images by
 * walking the marker segments: lengths are skipped, and only the entropy-coded data
 * after SOS is scanned, where FF00 (stuffing) and FFD0–FFD7 (restarts) are not markers.
 * So an FFD9 inside a segment (an EXIF thumbnail, say) never ends an image early.
 */

export class JpegFormatError extends Error {
  override readonly name = 'JpegFormatError';
}

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const TEM = 0x01;

type State = 'start' | 'marker' | 'entropy';

export class JpegSplitter {
  private buffer: Buffer = Buffer.alloc(0);
  /** Where scanning resumes in `buffer`: bytes before it are already understood. */
  private pos = 0;
  private state: State = 'start';
  private readonly maxImageBytes: number;

  constructor(options: { maxImageBytes?: number } = {}) {
    this.maxImageBytes = options.maxImageBytes ?? 64 * 1024 * 1024;
  }

  push(data: Buffer): Buffer[] {
    this.buffer = this.buffer.length === 0 ? data : Buffer.concat([this.buffer, data]);
    const images: Buffer[] = [];
    for (;;) {
      const end = this.scan();
      if (end === undefined) break;
      images.push(this.buffer.subarray(0, end));
      this.buffer = this.buffer.subarray(end);
      this.pos = 0;
      this.state = 'start';
    }
    if (this.buffer.length > this.maxImageBytes) throw new JpegFormatError(`no end of image within ${this.maxImageBytes} bytes`);
    return images;
  }

  end(): Buffer[] {
    if (this.buffer.length > 0) throw new JpegFormatError(`stream ended inside an image (${this.buffer.length} bytes buffered)`);
    return [];
  }

  /** Advance through `buffer`; the end offset of a complete image, or undefined when more bytes are needed. */
  private scan(): number | undefined {
    const buf = this.buffer;
    for (;;) {
      if (this.state === 'start') {
        if (buf.length < 2) return undefined;
        if (buf[0] !== 0xff || buf[1] !== SOI) throw new JpegFormatError(`image does not start with SOI (got ${buf.subarray(0, 2).toString('hex')})`);
        this.pos = 2;
        this.state = 'marker';
      }
      if (this.state === 'marker') {
        // Fill bytes (extra FFs) may precede a marker.
        while (this.pos + 1 < buf.length && buf[this.pos] === 0xff && buf[this.pos + 1] === 0xff) this.pos++;
        if (this.pos + 2 > buf.length) return undefined;
        if (buf[this.pos] !== 0xff) throw new JpegFormatError(`expected a marker at ${this.pos}, got ${buf[this.pos]?.toString(16)}`);
        const marker = buf[this.pos + 1] ?? 0;
        if (marker === EOI) return this.pos + 2;
        if (marker === SOI) throw new JpegFormatError(`SOI inside an image at ${this.pos}`);
        if (marker === TEM || (marker >= 0xd0 && marker <= 0xd7)) {
          this.pos += 2; // standalone markers carry no length
          continue;
        }
        if (this.pos + 4 > buf.length) return undefined;
        const length = buf.readUInt16BE(this.pos + 2);
        if (length < 2) throw new JpegFormatError(`marker ${marker.toString(16)} has length ${length}`);
        if (this.pos + 2 + length > buf.length) return undefined;
        this.pos += 2 + length;
        if (marker === SOS) this.state = 'entropy';
        continue;
      }
      // Entropy-coded data runs to the first FF that starts a real marker.
      for (;;) {
        const ff = buf.indexOf(0xff, this.pos);
        if (ff < 0 || ff + 1 >= buf.length) {
          this.pos = ff < 0 ? buf.length : ff;
          return undefined;
        }
        const next = buf[ff + 1] ?? 0;
        if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) {
          this.pos = ff + 2;
          continue;
        }
        this.pos = ff;
        this.state = 'marker';
        break;
      }
    }
  }
}
