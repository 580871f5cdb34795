import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InitialImage } from '../protocol/index.js';

const EXTENSIONS: Record<InitialImage['mime'], string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/jpg': 'jpg',
  'image/webp': 'webp',
};

/** A session's initial image in a private temp dir (0700), removed at session end. */
export class InitImageFile {
  private constructor(
    readonly path: string,
    private readonly dir: string,
  ) {}

  static async write(image: InitialImage, tempRoot: string = tmpdir()): Promise<InitImageFile> {
    const dir = await mkdtemp(join(tempRoot, 'livegen-init-'));
    const path = join(dir, `initial.${EXTENSIONS[image.mime]}`);
    await writeFile(path, Buffer.from(image.data, 'base64'), { mode: 0o600 });
    return new InitImageFile(path, dir);
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
