import type { PickedImageInfo } from './model.js';

/** The server's limits (PROTOCOL.md `initial_image`, src/server/policy.ts): checked here before sending. */
export const MAX_IMAGE_BYTES = 32 * 1024 * 1024;
export const MAX_IMAGE_SIDE = 16384;
export const MAX_IMAGE_PIXELS = 2 ** 26;

export type ImageMime = 'image/png' | 'image/jpeg' | 'image/webp';

/** An image ready for `session_init_v2.initial_image`, with what the page shows of it. */
export interface PickedImage extends PickedImageInfo {
  mime: ImageMime;
  /** The file's bytes, base64. */
  data: string;
  /** An object URL for the thumbnail; revoke it when the image is dropped. */
  previewUrl: string;
}

/** A file the page will not send, with the reason in words. */
export class ImageRefused extends Error {
  override readonly name = 'ImageRefused';
}

const LABEL: Record<ImageMime, string> = { 'image/png': 'PNG', 'image/jpeg': 'JPEG', 'image/webp': 'WebP' };

function startsWith(bytes: Uint8Array, prefix: readonly number[], at = 0): boolean {
  return prefix.every((b, i) => bytes[at + i] === b);
}

const ascii = (text: string): number[] => [...text].map((c) => c.charCodeAt(0));

/** The image type by the file's first bytes (its signature), whatever its name or declared type. */
export function sniffImageType(head: Uint8Array): ImageMime | undefined {
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'image/png';
  if (startsWith(head, [0xff, 0xd8, 0xff])) return 'image/jpeg';
  if (startsWith(head, ascii('RIFF')) && startsWith(head, ascii('WEBP'), 8)) return 'image/webp';
  return undefined;
}

/** What a file that is not PNG/JPEG/WebP seems to be, for the message. */
function lookalike(head: Uint8Array): string {
  if (startsWith(head, ascii('GIF8'))) return 'it is a GIF';
  if (startsWith(head, ascii('BM'))) return 'it looks like a BMP';
  if (startsWith(head, ascii('%PDF'))) return 'it is a PDF';
  if (startsWith(head, [0x50, 0x4b, 0x03, 0x04])) return 'it is a ZIP archive (or an office document)';
  if (startsWith(head, ascii('ftyp'), 4)) return 'it is an ISO media file (HEIC/AVIF image or MP4 video)';
  if (startsWith(head, [0x49, 0x49, 0x2a, 0x00]) || startsWith(head, [0x4d, 0x4d, 0x00, 0x2a])) return 'it is a TIFF';
  const text = [...head].every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b < 0x7f));
  if (text) return /^\s*</.test(String.fromCharCode(...head)) ? 'it is text (SVG/HTML/XML)' : 'it is text';
  return 'its first bytes are no image signature';
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function base64Of(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const url = String(reader.result);
      resolve(url.slice(url.indexOf(',') + 1));
    };
    reader.onerror = () => reject(reader.error ?? new Error('the file could not be read'));
    reader.readAsDataURL(blob);
  });
}

/**
 * Checks a picked file the way the server will, and more: size (at most 32 MiB), type by
 * its first bytes (PNG, JPEG, WebP; the name and declared type are not trusted), that it
 * decodes as an image, and its dimensions. Throws `ImageRefused` saying why not.
 */
export async function readInitialImage(file: File): Promise<PickedImage> {
  const name = file.name || 'the file';
  if (file.size === 0) throw new ImageRefused(`${name} is empty.`);
  if (file.size > MAX_IMAGE_BYTES) {
    throw new ImageRefused(`${name} is ${mib(file.size)}; the server takes an initial image of at most ${mib(MAX_IMAGE_BYTES)}.`);
  }
  const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  const mime = sniffImageType(head);
  if (!mime) {
    const declared = file.type ? ` (declared ${file.type})` : '';
    throw new ImageRefused(`${name}${declared} is not a PNG, JPEG or WebP image: ${lookalike(head)}.`);
  }
  // Decode it under the type its bytes say, so a misnamed file is judged for what it is.
  const typed = file.type === mime ? file : new Blob([file], { type: mime });
  let width: number;
  let height: number;
  try {
    const bitmap = await createImageBitmap(typed);
    width = bitmap.width;
    height = bitmap.height;
    bitmap.close();
  } catch (err) {
    throw new ImageRefused(
      `${name} starts like a ${LABEL[mime]} but cannot be decoded: the file is damaged or incomplete (${err instanceof Error ? err.message : String(err)}).`,
    );
  }
  if (width < 1 || height < 1) throw new ImageRefused(`${name} decodes to an empty image (${width}x${height}).`);
  if (width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || width * height > MAX_IMAGE_PIXELS) {
    throw new ImageRefused(
      `${name} is ${width}x${height}; the server takes at most ${MAX_IMAGE_SIDE} pixels a side and ${MAX_IMAGE_PIXELS / 2 ** 20} Mpx in all.`,
    );
  }
  const data = await base64Of(typed);
  return { name: file.name, mime, bytes: file.size, width, height, data, previewUrl: URL.createObjectURL(typed) };
}

export function describeImage(image: PickedImageInfo): string {
  const kib = image.bytes >= 1024 * 1024 ? mib(image.bytes) : `${Math.max(1, Math.round(image.bytes / 1024))} KiB`;
  return `${image.name || 'image'}: ${LABEL[image.mime as ImageMime] ?? image.mime}, ${image.width}x${image.height}, ${kib}`;
}
