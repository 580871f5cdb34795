/**
 * Plain words for every error code the page can meet: the protocol's (PROTOCOL.md,
 * server → client `error`) and the ones the page and the SDK detect. `what` says what
 * happened; `advice` what the user can do when the page does not retry on its own.
 */
import type { ClientErrorCode, ErrorCode, ErrorMessage } from '../../src/client/index.js';

/** Codes the page itself raises, besides the protocol's and the SDK's. */
type PageErrorCode = 'connection_lost' | 'invalid_image' | 'invalid_state_file' | 'no_state' | 'media_error';

export interface ErrorText {
  what: string;
  advice: string;
}

// Keyed by every code, so a code added to the protocol or the SDK fails the type check until it has words.
export const ERROR_TEXT: Record<ErrorCode | ClientErrorCode | PageErrorCode, ErrorText> = {
  // ---- the protocol's codes
  session_rejected: {
    what: 'The server is full and turned this session away (it holds as many sessions, or queued sessions, as it allows).',
    advice: 'Try again in a little while, when other sessions have ended.',
  },
  invalid_message: {
    what: 'The server refused something this page sent (the start request, the initial image, a saved state or a prompt).',
    advice: 'Check what the server names below: pick another image or state file, or change the prompt, then press Start.',
  },
  preset_mismatch: {
    what: 'The server does not serve the preset (model setup) this page asked for.',
    advice: 'Use a server that serves that preset, or start without one.',
  },
  gpu_unavailable: {
    what: 'No GPU worker was free in time: the queue waited too long, or too many segment requests were waiting.',
    advice: 'Wait for the segments already asked for to finish, or try again later.',
  },
  worker_failed: {
    what: 'The video generator failed while making a segment.',
    advice: 'Press Continue to go on from the last good state, or Start to begin again.',
  },
  upstream_timeout: {
    what: 'The video generator took too long to answer.',
    advice: 'Press Continue to go on from the last good state, or try again later.',
  },
  internal_error: {
    what: 'The server hit an internal problem (media encoding, storage, temp space, or no state stored yet).',
    advice: 'Press Continue or Start to try again; if it keeps happening, tell the server operator.',
  },
  // ---- detected by the SDK or the page
  connection_lost: {
    what: 'The connection to the server dropped without a proper close (network, server crash or restart).',
    advice: 'Check that the server is up, then press Continue (or Start).',
  },
  connection_failed: {
    what: 'The page could not connect to the server: it is down, or it refused the connection (API key, origin, rate limit).',
    advice: 'Check the server address and ?token=, then press Start again.',
  },
  connection_closed: {
    what: 'The connection closed while the page was waiting for an answer.',
    advice: 'Press Continue or Start to go on.',
  },
  not_open: { what: 'The connection is not open.', advice: 'Press Start.' },
  invalid_request: { what: 'The page cannot send that.', advice: 'Fix what the message names and try again.' },
  invalid_server_message: {
    what: 'The server sent a message this page does not understand; it was ignored.',
    advice: 'The page and the server may be of different versions; reload the page.',
  },
  unexpected_binary: { what: 'The server sent media outside a segment; it was ignored.', advice: 'Reload the page if playback breaks.' },
  timeout: { what: 'An answer from the server did not come in time.', advice: 'Try again.' },
  invalid_image: { what: 'The initial image was refused before sending.', advice: 'Pick a PNG, JPEG or WebP image of at most 32 MiB.' },
  invalid_state_file: { what: 'The state file cannot be used.', advice: 'Pick a state file this page downloaded.' },
  no_state: { what: 'There is no continuation state to save yet.', advice: 'Wait until a segment has finished.' },
  media_error: { what: 'The browser could not play the media.', advice: 'Press Stop and Start again; try another browser if it keeps happening.' },
};

/** The server's `error.reason` values: a finer cause than the code. */
export type ErrorReason = NonNullable<ErrorMessage['reason']>;

// Keyed by every reason, so a reason added to the protocol fails the type check until it has words.
export const ERROR_REASON_TEXT: Record<ErrorReason, ErrorText> = {
  prompt_blocked: {
    what: "The server's safety filter blocked a prompt: it was not generated.",
    advice: 'The stream goes on. Rephrase the prompt and queue it again.',
  },
};

/** The words for an error: by its `reason` when the server gave a known one, else by its code. */
export function errorText(code: string, reason?: string): ErrorText {
  const byReason = reason === undefined ? undefined : (ERROR_REASON_TEXT as Record<string, ErrorText | undefined>)[reason];
  return byReason ?? (ERROR_TEXT as Record<string, ErrorText | undefined>)[code] ?? { what: `An error (${code}).`, advice: 'Press Start to try again.' };
}
