import type { LivegenPlayerDebug } from './model.js';
import { PlayerApp, serverUrlFor } from './player-app.js';
import { findElements } from './view.js';

declare global {
  interface Window {
    livegenPlayer: LivegenPlayerDebug;
  }
}

function numberParam(params: URLSearchParams, name: string): number | undefined {
  const value = params.get(name);
  if (value === null) return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

const params = new URLSearchParams(location.search);
const app = new PlayerApp(findElements(), {
  serverUrl: serverUrlFor(location),
  // Tuning knobs for experiments and tests: ?keepBehind=30&startAhead=0.3 (seconds).
  keepBehindS: numberParam(params, 'keepBehind'),
  startAheadS: numberParam(params, 'startAhead'),
});
window.livegenPlayer = app.debug();
