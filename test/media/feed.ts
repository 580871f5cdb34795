/** Something fed a byte stream in pieces that returns whole units (boxes, JPEGs) as they complete. */
export interface StreamSplitter<T> {
  push(chunk: Buffer): T[];
  end(): T[];
}

/** Feeds `stream` to `splitter` cut at `cuts` and collects every unit, including what `end()` returns. */
export function feedInPieces<T>(splitter: StreamSplitter<T>, stream: Buffer, cuts: number[]): T[] {
  const out: T[] = [];
  let start = 0;
  for (const cut of [...cuts, stream.length]) {
    out.push(...splitter.push(stream.subarray(start, cut)));
    start = cut;
  }
  out.push(...splitter.end());
  return out;
}
