/** Reads what a benchmark needs from fMP4 frames: the video track, and the video samples per fragment. */
import { childBoxes, findChild, iterateBoxes, readTracks } from '../../src/media/index.js';
import { readFragmentTrackId } from '../../src/media/boxes.js';

/** The video track id of an init segment (`ftyp`+`moov`), or undefined. */
export function videoTrackId(init: Buffer): number | undefined {
  for (const box of iterateBoxes(init)) {
    if (box.type !== 'moov') continue;
    return readTracks(box).find((t) => t.handler === 'vide')?.trackId;
  }
  return undefined;
}

/** Video samples (frames) in one binary frame of whole `moof`+`mdat` pairs. */
export function videoSamples(fragment: Buffer, trackId: number): number {
  let samples = 0;
  for (const box of iterateBoxes(fragment)) {
    if (box.type !== 'moof') continue;
    for (const traf of childBoxes(box)) {
      if (traf.type !== 'traf') continue;
      const tfhd = findChild(traf, 'tfhd');
      if (!tfhd || readFragmentTrackId(tfhd) !== trackId) continue;
      for (const trun of childBoxes(traf)) {
        if (trun.type === 'trun') samples += trun.data.readUInt32BE(trun.headerSize + 4);
      }
    }
  }
  return samples;
}
