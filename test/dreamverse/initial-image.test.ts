/**
 * The Dreamverse init's `initial_image` (a base64 data URL): kept in a private temp file
 * for the generator while the session lasts, removed at its end; a bad one ends the
 * session with Dreamverse's "Invalid initial image" and close 1003.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../server/harness.js';
import { DvClient, dvUrl } from './dv-client.js';

const PNG_1X1 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

let server: TestServer | undefined;
let dir: string | undefined;
const clients: DvClient[] = [];
afterEach(async () => {
  clients.splice(0).forEach((c) => c.close());
  await server?.close();
  server = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('the /ws initial image', () => {
  it('is written to a private temp file for the first segment and removed when the session ends', async () => {
    dir = await mkdtemp(join(tmpdir(), 'livegen-dv-image-'));
    server = await startServer({ streaming: { generation_segment_cap: 1 } }, { tempDir: dir });
    const c = await DvClient.start(dvUrl(server.url), {
      type: 'session_init_v2',
      preset_id: 'p',
      curated_prompts: ['a lighthouse'],
      initial_image: { data_url: `data:image/png;base64,${PNG_1X1}`, mime_type: 'image/png', name: 'x.png' },
      enhancement_enabled: false,
    });
    clients.push(c);
    await c.waitFor('ltx2_stream_start');
    const runDir = (await server.server.inspect()).tempDir;
    const sessionDir = readdirSync(runDir).find((name) => name !== 'pid') as string;
    const file = join(runDir, sessionDir, 'initial.png');
    expect(readFileSync(file).toString('base64')).toBe(PNG_1X1);
    await c.waitFor('ltx2_stream_complete');
    c.close();
    await expect.poll(() => existsSync(file)).toBe(false);
  });

  it.each([
    ['not a data URL', { data_url: 'https://example.com/x.png', mime_type: 'image/png' }],
    ['bytes that are not the declared image', { data_url: `data:image/png;base64,${Buffer.from('not a png').toString('base64')}`, mime_type: 'image/png' }],
    ['a type Dreamverse does not take', { data_url: `data:image/gif;base64,${PNG_1X1}`, mime_type: 'image/gif' }],
  ])('refuses %s with "Invalid initial image" and close 1003', async (_name, image) => {
    server = await startServer();
    const c = await DvClient.start(dvUrl(server.url), { type: 'session_init_v2', curated_prompts: ['a lighthouse'], initial_image: image });
    clients.push(c);
    const closed = await c.waitForClose();
    expect(closed.code).toBe(1003);
    expect(c.ofType('error')[0]?.message).toMatch(/^Invalid initial image: /);
    expect(c.ofType('gpu_assigned')).toHaveLength(0);
  });
});
