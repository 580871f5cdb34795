/** A clock that moves only when told: stores take `now`, tests call `advance`. */
export class ManualClock {
  private ms = 1_000_000;

  readonly now = (): number => this.ms;

  advance(ms: number): void {
    this.ms += ms;
  }
}
