/**
 * What the synthetic generator draws and sounds like, as pure functions of the prompt,
 * the clip's motion seed and the global frame index, so equal inputs give equal bytes
 * and a continued segment picks the picture up where the last one left it.
 */
import { FRAME_INDEX_LIMIT, frameIndexStripLayout, writeFrameIndex } from './frame-index-strip.js';

export type Rgb = [number, number, number];

/** 32-bit FNV-1a over the UTF-8 bytes (or raw bytes) of the input. */
export function fnv1a32(input: string | Uint8Array): number {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193);
  return hash >>> 0;
}

/** Spread the bits of a 32-bit value (murmur3's finaliser), so nearby seeds land far apart. */
export function mix32(value: number): number {
  let h = value >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function hsvToRgb(hueDegrees: number, saturation: number, value: number): Rgb {
  const c = value * saturation;
  const h = hueDegrees / 60;
  const x = c * (1 - Math.abs((h % 2) - 1));
  const m = value - c;
  const [r, g, b]: Rgb =
    h < 1 ? [c, x, 0] : h < 2 ? [x, c, 0] : h < 3 ? [0, c, x] : h < 4 ? [0, x, c] : h < 5 ? [x, 0, c] : [c, 0, x];
  return [Math.round((r + m) * 255), Math.round((g + m) * 255), Math.round((b + m) * 255)];
}

/** The background colour of a prompt: a stable hash picks the hue of a saturated colour. */
export function promptColour(prompt: string): Rgb {
  const hue = (fnv1a32(prompt) / 2 ** 32) * 360;
  return hsvToRgb(hue, 0.85, 0.9);
}

const TONE_BASE_HZ = 220;
const TONE_SEMITONES = 25;

/** The tone of a prompt: one of the 25 equal-tempered pitches from 220 Hz (A3) to 880 Hz (A5). */
export function promptToneHz(prompt: string): number {
  const semitone = fnv1a32(`tone:${prompt}`) % TONE_SEMITONES;
  return TONE_BASE_HZ * 2 ** (semitone / 12);
}

/** The bottom-right patch that shows the init image was read (about 1/8 of each side). */
export function imagePatchRect(width: number, height: number): { x: number; y: number; width: number; height: number } {
  const pw = Math.min(width, Math.max(8, 2 * Math.round(width / 16)));
  const ph = Math.min(height, Math.max(8, 2 * Math.round(height / 16)));
  return { x: width - pw, y: height - ph, width: pw, height: ph };
}

/** Everything that fixes a segment's picture apart from the frame index. */
export interface SceneSpec {
  width: number;
  height: number;
  prompt: string;
  /** Chosen from the seed when a clip starts, then carried so the motion continues. */
  motionSeed: number;
  /** Colour of the init-image patch (derived from the image's bytes), if there is an image. */
  imagePatch: Rgb | null;
}

/**
 * Renders frames of one segment: the prompt's colour shaded top to bottom, a bar in the
 * complementary colour sliding across (position from the motion seed and the global
 * frame index), the init-image patch in the bottom-right corner, and the index strip.
 */
export class SyntheticScene {
  private readonly background: Buffer;
  private readonly barRow: Buffer;
  private readonly barWidth: number;
  private readonly barOrigin: number;
  private readonly barStep: number;

  constructor(private readonly spec: SceneSpec) {
    const { width, height, prompt, motionSeed } = spec;
    frameIndexStripLayout(width, height); // fail early if the strip cannot fit
    const colour = promptColour(prompt);
    this.background = Buffer.allocUnsafe(width * height * 3);
    const row = Buffer.allocUnsafe(width * 3);
    for (let y = 0; y < height; y++) {
      const shade = 1 - (0.35 * y) / height;
      const pixel = Buffer.from(colour.map((c) => Math.round(c * shade)));
      row.fill(pixel);
      row.copy(this.background, y * width * 3);
    }

    const motion = mix32(motionSeed);
    this.barWidth = Math.max(8, Math.round(width / 16));
    this.barOrigin = motion % width;
    this.barStep = Math.max(2, Math.round(width / 96)) * (1 + ((motion >>> 24) % 3));
    this.barRow = Buffer.allocUnsafe(this.barWidth * 3).fill(Buffer.from(colour.map((c) => 255 - c)));
  }

  private paintPatch(frame: Buffer, patch: Rgb): void {
    const { width, height } = this.spec;
    const { x, y, width: pw, height: ph } = imagePatchRect(width, height);
    const pixel = Buffer.from(patch);
    for (let row = y; row < y + ph; row++) {
      const start = (row * width + x) * 3;
      frame.fill(pixel, start, start + pw * 3);
    }
  }

  /**
   * Renders into `target` (a buffer of the frame's size the caller owns), or into a fresh
   * buffer. Nothing here touches the frame after it is returned.
   */
  render(globalFrameIndex: number, target?: Buffer): Buffer {
    const { width, height } = this.spec;
    const frame = target && target.length === this.background.length ? target : Buffer.allocUnsafe(this.background.length);
    this.background.copy(frame);
    const x = (this.barOrigin + ((globalFrameIndex * this.barStep) % width)) % width;
    const firstPart = Math.min(this.barWidth, width - x);
    for (let y = 0; y < height; y++) {
      const rowStart = y * width * 3;
      this.barRow.copy(frame, rowStart + x * 3, 0, firstPart * 3);
      if (firstPart < this.barWidth) this.barRow.copy(frame, rowStart, firstPart * 3);
    }
    if (this.spec.imagePatch) this.paintPatch(frame, this.spec.imagePatch);
    writeFrameIndex(frame, width, height, globalFrameIndex % FRAME_INDEX_LIMIT);
    return frame;
  }
}
