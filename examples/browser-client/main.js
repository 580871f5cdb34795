/* global document, location, MediaSource */
// The example page's script: the livegen client SDK, imported by its package name as a
// web app would, and bundled for the browser by build.mjs (esbuild) into app.js.
import { LivegenClient } from 'livegen/client';

/**
 * Asks the server at `serverUrl` for one segment of `prompt` and hands each media chunk
 * (the segment's init segment, then its fragments, in order) to `onChunk`. Resolves, once
 * the segment is complete and the session has left, with what arrived. `WebSocket` is
 * needed only where there is no global one (Node 20: the `ws` package).
 */
export async function watchOneSegment(serverUrl, { prompt, WebSocket, onChunk = () => {}, onStatus = () => {} }) {
  const client = await LivegenClient.connect(serverUrl, WebSocket ? { WebSocket } : {});
  const got = { chunks: 0, bytes: 0, mime: '', generationMs: 0 };
  client.on('queue_status', (m) => onStatus(`queued: position ${m.position} of ${m.queue_depth}`));
  client.on('ltx2_segment_start', (m) => onStatus(`segment ${m.segment_idx}: ${m.prompt}`));
  client.on('step_complete', (m) => onStatus(`step ${m.step}/${m.total_steps}`));
  client.on('media', (chunk) => {
    got.chunks += 1;
    got.bytes += chunk.data.byteLength;
    got.mime = chunk.mime;
    onChunk(chunk);
  });
  client.on('error', (e) => onStatus(`error ${e.code}${e.retryable ? ' (retryable)' : ''}: ${e.message}`));
  try {
    client.init({ auto_extension_enabled: false });
    client.requestSegment(prompt);
    const done = await client.next('ltx2_segment_complete', { timeoutMs: 60_000 });
    got.generationMs = done.generation_time_ms;
  } finally {
    await client.leave();
  }
  return got;
}

/** Plays chunks through Media Source Extensions: one SourceBuffer, appended in order. */
function mediaSourcePlayer(video) {
  const source = new MediaSource();
  video.src = URL.createObjectURL(source);
  const opened = new Promise((resolve) => source.addEventListener('sourceopen', resolve, { once: true }));
  const queue = [];
  let buffer;
  const pump = () => {
    if (!buffer || buffer.updating || queue.length === 0) return;
    buffer.appendBuffer(queue.shift());
  };
  return {
    async push(chunk) {
      await opened;
      if (!buffer) {
        buffer = source.addSourceBuffer(chunk.mime);
        buffer.mode = 'sequence';
        buffer.addEventListener('updateend', pump);
      }
      queue.push(chunk.data);
      pump();
      if (video.paused && video.readyState >= 2) video.play().catch(() => {});
    },
  };
}

if (typeof document !== 'undefined') {
  const log = document.getElementById('log');
  const status = (line) => {
    log.textContent += `${line}\n`;
    log.scrollTop = log.scrollHeight;
  };
  document.getElementById('form').addEventListener('submit', (event) => {
    event.preventDefault();
    const button = document.getElementById('start');
    button.disabled = true;
    const video = document.getElementById('video');
    const player = mediaSourcePlayer(video);
    // The page is served by the livegen server itself, so its own address is the server's.
    watchOneSegment(location.href, { prompt: document.getElementById('prompt').value, onChunk: (c) => void player.push(c), onStatus: status })
      .then((got) => status(`done: ${got.chunks} chunks, ${got.bytes} bytes of ${got.mime}, generated in ${got.generationMs} ms`))
      .catch((err) => status(`failed: ${err.message}`))
      .finally(() => (button.disabled = false));
  });
}
