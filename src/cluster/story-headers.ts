import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { ContinuedStory } from '../server/session-driver.js';

/**
 * The upgrade headers a router sends when it moves a session to another replica: where
 * the story goes on (segment index, media time), and the cluster secret that proves the
 * router sent them. A replica honours them only with the right secret (when
 * `LIVEGEN_CLUSTER_SECRET` is set), so a client cannot skip the segment cap by sending them.
 */
export const SEGMENT_HEADER = 'x-livegen-continue-segment';
export const PTS_HEADER = 'x-livegen-continue-pts-ms';
export const SECRET_HEADER = 'x-livegen-cluster-secret';
/** The router's own marker, so a replica's logs can tell routed sessions apart. */
export const ROUTER_HEADER = 'x-livegen-router';

export function storyHeaders(story: ContinuedStory, secret: string | undefined): Record<string, string> {
  return {
    [SEGMENT_HEADER]: String(story.segmentIdx),
    [PTS_HEADER]: String(story.ptsBaseMs),
    ...(secret ? { [SECRET_HEADER]: secret } : {}),
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The story a routed upgrade carries, when it carries one and may be trusted. */
export function readStory(req: IncomingMessage, secret: string | undefined): ContinuedStory | undefined {
  const segment = req.headers[SEGMENT_HEADER];
  if (typeof segment !== 'string') return undefined;
  if (secret) {
    const given = req.headers[SECRET_HEADER];
    if (typeof given !== 'string' || !timingSafeEqual(digest(given), digest(secret))) return undefined;
  }
  const segmentIdx = Number(segment);
  const pts = Number(req.headers[PTS_HEADER] ?? '0');
  if (!Number.isSafeInteger(segmentIdx) || segmentIdx < 0 || !Number.isFinite(pts) || pts < 0) return undefined;
  return { segmentIdx, ptsBaseMs: pts };
}
