import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TempSpaceError } from './wire-errors.js';

const EXTENSIONS: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/jpg': 'jpg',
  'image/webp': 'webp',
};

const RUN_DIR_PREFIX = 'livegen-run-';

/** A session's initial image in a private temp dir (0700), removed at session end. */
export interface InitImageFile {
  readonly path: string;
  remove(): Promise<void>;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Where sessions' temp files live: one directory per server process under the temp
 * root, holding at most `maxBytes` at once. A directory whose process is gone (it was
 * killed before it could clean up) is removed when the next server starts.
 */
export class TempFiles {
  readonly dir: string;
  private heldBytes = 0;

  constructor(
    tempRoot: string,
    private readonly maxBytes: number,
  ) {
    removeStaleRunDirs(tempRoot);
    mkdirSync(tempRoot, { recursive: true });
    this.dir = join(tempRoot, `${RUN_DIR_PREFIX}${process.pid}-${Date.now().toString(36)}`);
    mkdirSync(this.dir, { mode: 0o700 });
    writeFileSync(join(this.dir, 'pid'), String(process.pid));
  }

  /** Bytes of files held now. */
  get bytes(): number {
    return this.heldBytes;
  }

  /**
   * Writes an image for a session. A full disk or a budget that would be exceeded gives
   * a `TempSpaceError` and leaves no partial file behind.
   */
  async writeImage(bytes: Buffer, mime: string): Promise<InitImageFile> {
    if (this.heldBytes + bytes.length > this.maxBytes) {
      throw new TempSpaceError('the server holds its maximum of initial images right now; retry later');
    }
    this.heldBytes += bytes.length;
    let dir: string | undefined;
    try {
      dir = await mkdtemp(join(this.dir, 'session-'));
      const path = join(dir, `initial.${EXTENSIONS[mime] ?? 'bin'}`);
      await writeFile(path, bytes, { mode: 0o600 });
      const sessionDir = dir;
      let removed = false;
      return {
        path,
        remove: async () => {
          if (removed) return;
          removed = true;
          this.heldBytes -= bytes.length;
          await rm(sessionDir, { recursive: true, force: true });
        },
      };
    } catch (err) {
      this.heldBytes -= bytes.length;
      if (dir) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw new TempSpaceError("cannot store the initial image: the server's temp space is full; retry later");
      throw err;
    }
  }

  /** Removes the run directory (server shutdown). */
  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Removes run directories under `tempRoot` whose server process no longer exists. */
export function removeStaleRunDirs(tempRoot: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(tempRoot);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const entry of entries) {
    if (!entry.startsWith(RUN_DIR_PREFIX)) continue;
    const dir = join(tempRoot, entry);
    let pid: number;
    try {
      pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    } catch {
      pid = Number(/^livegen-run-(\d+)-/.exec(entry)?.[1]);
    }
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || processAlive(pid)) continue;
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}
