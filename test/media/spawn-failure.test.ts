import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../fixtures/media/spawn-emfile.ts', import.meta.url));

describe('ffmpeg that cannot be started', () => {
  it('reports a spawn that fails with EMFILE as spawn_failed instead of ending the process', async () => {
    const { stdout } = await run('bash', ['-c', `ulimit -n 64 && exec "${process.execPath}" --import tsx "${SCRIPT}"`], { timeout: 30_000 });
    const outcome = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { ok: boolean; message?: string };
    expect(outcome.message).toMatch(/EMFILE|ENFILE/);
    expect(outcome.ok).toBe(true);
  });
});
