import type { MediaChunk } from '../../src/client/index.js';

export interface MsePlayerOptions {
  /** Seconds of played media kept behind `currentTime`; older ranges are removed (default 30). */
  keepBehindS?: number;
  /** Seconds buffered ahead before playback starts, to ride out fragment arrival jitter (default 0.3). */
  startAheadS?: number;
  onError(message: string): void;
  /** The first video frame was presented. */
  onFirstFrame?(): void;
  /** Playback started (the first `playing`). */
  onPlaying?(): void;
}

export interface Stall {
  /** `currentTime` when playback stopped for want of data. */
  atS: number;
  ms: number;
}

/** A hole in the buffered media that playback skipped instead of waiting at it forever. */
export interface GapJump {
  /** Where playback stood waiting. */
  atS: number;
  /** Where it went on: just inside the next buffered range. */
  toS: number;
}

export interface MseStats {
  mime: string | undefined;
  appendedBytes: number;
  appendedChunks: number;
  segmentsAppended: number;
  evictions: number;
  /** Unfinished segments whose media was removed so a resumed session could take their place. */
  discards: number;
  bufferedStartS: number;
  bufferedEndS: number;
  bufferedAheadS: number;
  stalls: Stall[];
  gapJumps: GapJump[];
}

type Op =
  | { kind: 'init'; mime: string; data: Uint8Array }
  | { kind: 'media'; data: Uint8Array; retried?: boolean }
  | { kind: 'remove'; start: number; end: number }
  /** The open segment's media is all appended. */
  | { kind: 'sealed' }
  /** Remove the open (unfinished) segment's media; what comes next goes where it began. */
  | { kind: 'discard' }
  | { kind: 'offset'; at: number }
  | { kind: 'end' };

/** Evict only when this much more than `keepBehindS` has piled up (at most half of it), so removes stay rare. */
const EVICT_SLACK_S = 5;
/**
 * A hole in the buffered media at most this long, just ahead of a waiting playhead, is
 * jumped over (as hls.js and shaka do): the element itself would wait there forever.
 */
const MAX_GAP_S = 0.5;
/** Playback waiting with less than this left in its range stands at the range's end (it waits at the last frame's start). */
const RANGE_TAIL_S = 0.25;
/** Playback seen this far past a reopened source's old end went on through it. */
const STALE_END_MARGIN_S = 0.1;
/** Past a jumped gap, a little into the next range: buffered times are rounded, and a seek a hair short of its first frame lands in the hole again. */
const GAP_NUDGE_S = 0.01;

/**
 * Plays a story's segments through one `SourceBuffer` in `sequence` mode: each segment's
 * init segment then its fragments are appended in order, so the segments follow one another
 * on a single timeline with no gap, across sessions too (a resumed session's media follows
 * the last one's). Appends wait while the buffer is `updating`; ranges far behind the
 * playhead are removed so memory stays bounded.
 *
 * After `end()` more media may still come (Continue at the segment cap): the next `push`
 * reopens the source and playback goes on from where it stopped, never from the start.
 * `discardUnfinished()` removes a segment cut off mid-way (a dropped connection), so the
 * session that resumes from the last complete segment's state puts its media exactly where
 * that segment began. A small hole in the buffered media ahead of a waiting playhead is
 * jumped over.
 */
export class MsePlayer {
  private readonly mediaSource = new MediaSource();
  private readonly objectUrl: string;
  private sourceBuffer: SourceBuffer | undefined;
  private mime: string | undefined;
  private readonly ops: Op[] = [];
  private opened = false;
  private playRequested = false;
  private ending = false;
  private waitingSince: { at: number; atS: number } | undefined;
  private hasPlayed = false;
  private destroyed = false;
  private readonly keepBehindS: number;
  private readonly startAheadS: number;
  private readonly stats = {
    appendedBytes: 0,
    appendedChunks: 0,
    segmentsAppended: 0,
    evictions: 0,
    discards: 0,
    stalls: [] as Stall[],
    gapJumps: [] as GapJump[],
  };
  /** The end of the timeline when the source was last ended: where playback stops, and goes on from. */
  private endedAtS: number | undefined;
  /**
   * The end of an ended source that has been reopened since: the element's decoders may have
   * read that end of stream ahead already, and then it stops there however much media
   * follows. Forgotten once playback is seen past it or the element seeks (which drops it).
   */
  private staleEndS: number | undefined;
  /** Where the segment being appended began on the timeline; undefined once it is sealed. */
  private openSegmentStartS: number | undefined;
  private readonly detach: (() => void)[] = [];

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly options: MsePlayerOptions,
  ) {
    this.keepBehindS = options.keepBehindS ?? 30;
    this.startAheadS = options.startAheadS ?? 0.3;
    video.muted = true;
    video.autoplay = false;
    this.objectUrl = URL.createObjectURL(this.mediaSource);
    this.listen(this.mediaSource, 'sourceopen', () => {
      this.opened = true;
      this.pump();
    });
    this.listen(video, 'waiting', () => {
      if (this.hasPlayed && !this.waitingSince) this.waitingSince = { at: performance.now(), atS: video.currentTime };
      this.jumpGap();
    });
    this.listen(video, 'ended', () => this.endedEarly());
    this.listen(video, 'seeking', () => (this.staleEndS = undefined));
    this.listen(video, 'playing', () => {
      if (!this.hasPlayed) options.onPlaying?.();
      this.hasPlayed = true;
      this.endStall();
    });
    this.listen(video, 'timeupdate', () => {
      if (this.waitingSince && video.currentTime > this.waitingSince.atS) this.endStall();
      // Playing on past it (with a margin for a clock running a little past the last frame): it was not read.
      if (this.staleEndS !== undefined && !video.ended && video.currentTime > this.staleEndS + STALE_END_MARGIN_S) this.staleEndS = undefined;
    });
    this.listen(video, 'error', () => {
      const error = video.error;
      if (!this.destroyed) options.onError(`video element error ${error?.code ?? '?'}: ${error?.message || 'media decode error'}`);
    });
    video.src = this.objectUrl;
    this.watchFirstFrame();
  }

  /** Queues one media chunk; an `init` chunk starts a new segment (switching codecs if its MIME differs). */
  push(chunk: MediaChunk): void {
    if (this.destroyed) return;
    if (this.ending) this.reopen();
    if (chunk.kind === 'init') this.ops.push({ kind: 'init', mime: chunk.mime, data: chunk.data });
    else this.ops.push({ kind: 'media', data: chunk.data });
    this.pump();
  }

  /** The current segment's media has all been pushed (its `media_segment_complete`). */
  segmentComplete(): void {
    if (this.destroyed) return;
    this.ops.push({ kind: 'sealed' });
    this.pump();
  }

  /**
   * The current segment will never be finished (its session is gone): its media is removed
   * and the next segment pushed takes its place on the timeline. Nothing happens when the
   * last segment was complete.
   */
  discardUnfinished(): void {
    if (this.destroyed) return;
    if (this.ending) this.reopen();
    this.ops.push({ kind: 'discard' });
    this.pump();
  }

  /** No more media will come: the video ends after what is buffered instead of waiting. */
  end(): void {
    if (this.destroyed || this.ending) return;
    this.ending = true;
    this.ops.push({ kind: 'end' });
    this.pump();
  }

  snapshotStats(): MseStats {
    const buffered = this.sourceBuffer && this.mediaSource.readyState !== 'closed' ? this.sourceBuffer.buffered : undefined;
    const start = buffered && buffered.length > 0 ? buffered.start(0) : 0;
    const end = buffered && buffered.length > 0 ? buffered.end(buffered.length - 1) : 0;
    return {
      mime: this.mime,
      ...this.stats,
      stalls: [...this.stats.stalls, ...(this.waitingSince ? [{ atS: this.waitingSince.atS, ms: performance.now() - this.waitingSince.at }] : [])],
      gapJumps: [...this.stats.gapJumps],
      bufferedStartS: start,
      bufferedEndS: end,
      bufferedAheadS: Math.max(0, end - this.playhead()),
    };
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.ops.length = 0;
    for (const off of this.detach.splice(0)) off();
    this.video.pause();
    this.video.removeAttribute('src');
    this.video.load();
    URL.revokeObjectURL(this.objectUrl);
  }

  // ------------------------------------------------------------------ inside

  /** More media after `end()`: appending reopens an ended source; playback starts again once enough is buffered. */
  private reopen(): void {
    // Ended (not just about to): from here the element may still stop at that end, see staleEndS.
    if (this.mediaSource.readyState === 'ended') this.staleEndS ??= this.endedAtS;
    this.ending = false;
    this.playRequested = false;
    // An `end` not yet run would end the source again and play() an ended video from its start.
    for (let i = this.ops.length - 1; i >= 0; i--) if (this.ops[i]?.kind === 'end') this.ops.splice(i, 1);
  }

  private pump(): void {
    // An `ended` source reopens on the next append or remove (Media Source Extensions §3.5).
    if (this.destroyed || !this.opened || this.mediaSource.readyState === 'closed') return;
    if (this.sourceBuffer?.updating) return;
    const op = this.ops.shift();
    if (!op) return;
    try {
      this.run(op);
    } catch (err) {
      this.failed(op, err);
    }
  }

  private run(op: Op): void {
    switch (op.kind) {
      case 'init': {
        this.openSegmentStartS = this.bufferedEnd();
        const buffer = this.sourceBuffer ?? this.createSourceBuffer(op.mime);
        if (op.mime !== this.mime) {
          buffer.changeType(op.mime);
          this.mime = op.mime;
        }
        this.stats.segmentsAppended += 1;
        this.append(buffer, op.data);
        return;
      }
      case 'media': {
        const buffer = this.sourceBuffer;
        if (!buffer) throw new Error('a media fragment arrived before any init segment');
        this.append(buffer, op.data);
        return;
      }
      case 'remove':
        this.sourceBuffer?.remove(op.start, op.end);
        this.stats.evictions += 1;
        if (!this.sourceBuffer) this.pump();
        return;
      case 'sealed':
        this.openSegmentStartS = undefined;
        this.pump();
        return;
      case 'discard':
        this.discard();
        return;
      case 'offset':
        if (this.sourceBuffer) this.sourceBuffer.timestampOffset = op.at;
        this.pump();
        return;
      case 'end':
        // A source that never got media would end as a decode error; leave it empty instead.
        if (!this.sourceBuffer) return;
        if (this.mediaSource.readyState === 'open') this.mediaSource.endOfStream();
        // endOfStream sets the duration to the end of the longest track: where the element ends.
        this.endedAtS = Number.isFinite(this.mediaSource.duration) ? this.mediaSource.duration : this.bufferedEnd();
        this.startPlayback();
        return;
    }
  }

  private discard(): void {
    const start = this.openSegmentStartS;
    const buffer = this.sourceBuffer;
    this.openSegmentStartS = undefined;
    if (start === undefined || !buffer) {
      this.pump();
      return;
    }
    this.stats.discards += 1;
    // Forget any half-parsed segment, then drop everything from where the segment began.
    if (this.mediaSource.readyState === 'open') buffer.abort();
    // In sequence mode the next media would follow the removed range: put it where the segment began.
    this.ops.unshift({ kind: 'offset', at: start });
    const duration = this.mediaSource.duration;
    if (Number.isNaN(duration) || start >= duration) {
      this.pump();
      return;
    }
    buffer.remove(start, Infinity);
  }

  /** The end of the buffered media (0 when there is none). */
  private bufferedEnd(): number {
    const buffered = this.sourceBuffer && this.mediaSource.readyState !== 'closed' ? this.sourceBuffer.buffered : undefined;
    return buffered && buffered.length > 0 ? buffered.end(buffered.length - 1) : 0;
  }

  private append(buffer: SourceBuffer, data: Uint8Array): void {
    // appendBuffer takes an ArrayBuffer-backed view; a socket's frames always are.
    buffer.appendBuffer(data as Uint8Array<ArrayBuffer>);
    this.stats.appendedBytes += data.byteLength;
    this.stats.appendedChunks += 1;
  }

  private createSourceBuffer(mime: string): SourceBuffer {
    if (!MediaSource.isTypeSupported(mime)) throw new Error(`this browser cannot play ${mime} through Media Source Extensions`);
    const buffer = this.mediaSource.addSourceBuffer(mime);
    // One timeline for all segments: each segment's media follows the last without offsets to manage.
    buffer.mode = 'sequence';
    this.sourceBuffer = buffer;
    this.mime = mime;
    this.listen(buffer, 'updateend', () => this.afterUpdate());
    this.listen(buffer, 'error', () => this.options.onError('SourceBuffer error: the browser could not append the media'));
    return buffer;
  }

  private afterUpdate(): void {
    if (this.destroyed) return;
    this.startWhenBuffered();
    // What was waiting at a hole may now see the media past it.
    this.jumpGap();
    const buffered = this.sourceBuffer?.buffered;
    if (buffered && buffered.length > 0) {
      const start = buffered.start(0);
      const evictTo = this.playhead() - this.keepBehindS;
      // Not on an ended source: a remove would reopen it and the video would wait instead of ending.
      if (this.mediaSource.readyState === 'open' && evictTo - start > Math.min(EVICT_SLACK_S, this.keepBehindS / 2)) {
        this.ops.unshift({ kind: 'remove', start, end: evictTo });
      }
    }
    this.pump();
  }

  private failed(op: Op, err: unknown): void {
    const name = err instanceof Error ? err.name : '';
    if (name === 'QuotaExceededError' && op.kind === 'media' && !op.retried && this.sourceBuffer) {
      // Full: drop everything but the last moment before the playhead, then try once more.
      const buffered = this.sourceBuffer.buffered;
      const end = this.playhead() - 1;
      if (buffered.length > 0 && end > buffered.start(0)) {
        this.ops.unshift({ kind: 'remove', start: buffered.start(0), end }, { ...op, retried: true });
        this.pump();
        return;
      }
    }
    this.options.onError(`Media Source Extensions: ${op.kind} failed: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  }

  /** Starts playback (again) once `startAheadS` is buffered past the playhead. */
  private startWhenBuffered(): void {
    if (this.playRequested) return;
    const buffered = this.sourceBuffer && this.mediaSource.readyState !== 'closed' ? this.sourceBuffer.buffered : undefined;
    if (!buffered || buffered.length === 0) return;
    const start = buffered.start(0);
    const end = buffered.end(buffered.length - 1);
    // A timeline that does not begin at 0 would leave the playhead before the data.
    if (this.video.currentTime < start) this.video.currentTime = start;
    if (end - Math.max(start, this.playhead()) >= this.startAheadS) this.startPlayback();
  }

  private startPlayback(): void {
    if (this.playRequested || this.destroyed) return;
    this.playRequested = true;
    // An ended element stays ended until it seeks, however much media comes after (Chromium
    // reports currentTime as the duration, which grows), and play() on it seeks to 0: the
    // story would start over. Seek back to where it stopped first.
    if (this.video.ended) this.video.currentTime = this.playhead();
    this.video.play().catch((err: unknown) => {
      if (!this.destroyed) this.options.onError(`playback did not start: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  /**
   * Where playback really is. An element that ended stands at the end of the source it last
   * read, whatever currentTime says (Chromium reports the duration, which the media
   * appended since has moved on): the old end of a source reopened since, or the end.
   */
  private playhead(): number {
    const t = this.video.currentTime;
    return this.video.ended ? (this.staleEndS ?? this.endedAtS ?? t) : t;
  }

  /**
   * The element ended at the end of a source that was reopened for more media (Continue came
   * while the last of the old media still played, even if the new session has ended since):
   * its decoders had read that end of stream ahead, so it stopped there anyway, and would
   * stay stopped with the new media buffered past it. Play on from there once enough is
   * buffered, as after any reopen.
   */
  private endedEarly(): void {
    if (this.destroyed || this.staleEndS === undefined) return;
    this.playRequested = false;
    this.startWhenBuffered();
  }

  /**
   * Playback waits at a hole in the buffered media (past the end of one range, or at its
   * last frame) and the next range begins at most MAX_GAP_S ahead: skip to it. Nothing
   * fills such a hole (sequence mode appends at the end), so the element would wait forever.
   */
  private jumpGap(): void {
    const video = this.video;
    if (this.destroyed || video.paused || video.seeking || video.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA) return;
    const t = video.currentTime;
    const buffered = video.buffered;
    for (let i = 0; i < buffered.length; i++) {
      const start = buffered.start(i);
      if (start <= t) {
        // Media left where it stands: a slow decoder, not a hole.
        if (buffered.end(i) - t > RANGE_TAIL_S) return;
        continue;
      }
      if (start - t > MAX_GAP_S) return;
      const to = start + GAP_NUDGE_S;
      this.stats.gapJumps.push({ atS: t, toS: to });
      video.currentTime = to;
      return;
    }
  }

  private endStall(): void {
    const since = this.waitingSince;
    if (!since) return;
    this.waitingSince = undefined;
    this.stats.stalls.push({ atS: since.atS, ms: performance.now() - since.at });
  }

  private watchFirstFrame(): void {
    const onFirst = this.options.onFirstFrame;
    if (!onFirst) return;
    let done = false;
    const fire = (): void => {
      if (done || this.destroyed) return;
      done = true;
      onFirst();
    };
    // The first frame the compositor shows; `loadeddata` where frame callbacks are missing.
    if ('requestVideoFrameCallback' in this.video) this.video.requestVideoFrameCallback(() => fire());
    else this.listen(this.video, 'loadeddata', fire);
  }

  private listen(target: EventTarget, type: string, handler: () => void): void {
    target.addEventListener(type, handler);
    this.detach.push(() => target.removeEventListener(type, handler));
  }
}
