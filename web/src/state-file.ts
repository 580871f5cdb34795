import { parseContinuationState, type ContinuationState } from '../../src/client/index.js';

/** Saves a continuation state as a JSON file the browser downloads. */
export function downloadState(state: ContinuationState, anchor: HTMLAnchorElement): string {
  const frame = typeof state.payload.nextFrameIndex === 'number' ? `-frame${state.payload.nextFrameIndex}` : '';
  const name = `livegen-state${frame}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  const url = URL.createObjectURL(new Blob([`${JSON.stringify({ kind: state.kind, payload: state.payload }, null, 2)}\n`], { type: 'application/json' }));
  anchor.href = url;
  anchor.download = name;
  anchor.click();
  // The download has its own copy once it starts; free the blob a little later.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return name;
}

/** Reads a state file chosen in a file input; throws an Error that says what is wrong with it. */
export async function readStateFile(file: File): Promise<ContinuationState> {
  const text = await file.text();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file.name} is not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    return parseContinuationState(value);
  } catch (err) {
    throw new Error(`${file.name}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
