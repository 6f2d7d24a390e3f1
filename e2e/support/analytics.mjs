// A Workers Analytics Engine dataset that records its data points for tests. Miniflare's own
// `analyticsEngineDatasets` binding drops every point (writeDataPoint is an empty function, no
// limits checked, nothing persisted), so a test binds the name to a wrapped binding instead
// (./wrapped.mjs): a module in the caller's own isolate whose `writeDataPoint` checks the point
// as workerd does, synchronously, and prints it as one marked log line, which the test's log
// collector reads back. Every isolate's points meet there in write order, and none is lost to
// the end of a request, as a call to another Worker would be.
import { wrappedBinding } from './wrapped.mjs';

/** What starts a recorded point's log line. */
const MARK = 'm2m-test-dataset-point ';

// Checks like workerd's writeDataPoint (TypeError, same messages); blobs total up to 16 KB as the
// docs say. Prints indexes, blobs and doubles as written (ArrayBuffer blobs become base64 text).
const binding = `
const fail = (m) => { throw new TypeError('writeDataPoint(): ' + m); };
const bytes = (v) => typeof v === 'string' ? new TextEncoder().encode(v) : new Uint8Array(ArrayBuffer.isView(v) ? v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) : v);
const text = (v) => v == null || typeof v === 'string' ? v : btoa(String.fromCharCode(...bytes(v)));
export default function () {
  return {
    writeDataPoint(point = {}) {
      const { indexes = [], blobs = [], doubles = [] } = point;
      if (indexes.length > 1) fail('Maximum of 1 indexes supported.');
      if (blobs.length > 20) fail('Maximum of 20 blobs supported.');
      if (doubles.length > 20) fail('Maximum of 20 doubles supported.');
      for (const v of [...indexes, ...blobs]) {
        if (v != null && typeof v !== 'string' && !(v instanceof ArrayBuffer) && !ArrayBuffer.isView(v)) fail('blobs and indexes must be strings or bytes, got ' + typeof v);
      }
      if (indexes[0] != null && bytes(indexes[0]).length > 96) fail('Size of indexes[0] exceeds 96 bytes).');
      if (blobs.reduce((n, b) => n + (b == null ? 0 : bytes(b).length), 0) > 16384) fail('Cumulative size of blobs exceeds 16384 bytes).');
      if (doubles.some((d) => typeof d !== 'number')) fail('doubles must be numbers');
      console.log(${JSON.stringify(MARK)} + JSON.stringify({ indexes: indexes.map(text), blobs: blobs.map(text), doubles: [...doubles] }));
    },
  };
}`;

/** The `unsafeBindings` entry that binds `bindingName` to a recording dataset. */
export function recording(bindingName) {
  return wrappedBinding(bindingName, binding);
}

/** Whether a log line is a recorded point (not the Worker's own). */
export const isPoint = (line) => line.startsWith(MARK);

/** The data points among log lines, `{ indexes, blobs, doubles }` in write order. Lines reach
 *  the test a moment after the Worker printed them: this waits until none came for 100 ms. */
export async function pointsIn(logs, from = 0) {
  let n = -1;
  while (n !== logs.length) {
    n = logs.length;
    await new Promise((r) => setTimeout(r, 100));
  }
  return logs.slice(from).filter(isPoint).map((l) => JSON.parse(l.slice(MARK.length)));
}
