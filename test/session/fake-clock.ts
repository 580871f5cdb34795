/** A hand-driven millisecond clock, so session tests need no sleeps. */
export interface FakeClock {
  clock: () => number;
  now: () => number;
  advance: (ms: number) => number;
}

export function fakeClock(startMs = 1_000): FakeClock {
  let t = startMs;
  return {
    clock: () => t,
    now: () => t,
    advance: (ms: number) => (t += ms),
  };
}
