// A Workers Analytics Engine dataset that records its data points for tests. Miniflare's own
// `analyticsEngineDatasets` binding drops every point (writeDataPoint is an empty function, no
// limits checked, nothing persisted), so a test binds the name through `wrappedBindings` instead.
// A wrapped binding's module runs inside each calling isolate, so it only checks the point and
// hands it by RPC to one recorder Worker, where every isolate's points meet in write order.

import { COMPATIBILITY_DATE } from './compat.mjs';

/** The Worker that keeps the points (module memory); `points` and `clearPoints` read it. */
const RECORDER = 'metrics-recorder';
/** The wrapped binding's module (Miniflare allows no service binding to a wrapped Worker). */
const BINDING = 'metrics-recorder-binding';

const recorder = `
import { WorkerEntrypoint } from 'cloudflare:workers';
const points = [];
export default class extends WorkerEntrypoint {
  record(point) { points.push(point); }
  fetch(request) {
    if (request.method === 'DELETE') points.length = 0;
    return Response.json(points);
  }
}`;

// Checks like workerd's writeDataPoint (TypeError, same messages); blobs total up to 16 KB as the
// docs say. Sends indexes, blobs and doubles as written (ArrayBuffer blobs become base64 text).
const binding = `
const fail = (m) => { throw new TypeError('writeDataPoint(): ' + m); };
const bytes = (v) => typeof v === 'string' ? new TextEncoder().encode(v) : new Uint8Array(ArrayBuffer.isView(v) ? v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) : v);
const text = (v) => v == null || typeof v === 'string' ? v : btoa(String.fromCharCode(...bytes(v)));
export default function (env) {
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
      env.RECORDER.record({ indexes: indexes.map(text), blobs: blobs.map(text), doubles: [...doubles] })
        .catch((e) => console.error('metrics-recorder: point lost', e));
    },
  };
}`;

/** The two Miniflare Worker definitions to add to `workers` (not first: the entrypoint cannot
 *  be wrapped): the recorder and the wrapped binding's module that feeds it. */
export function recorderWorkers() {
  return [
    { name: RECORDER, modules: true, script: recorder, compatibilityDate: COMPATIBILITY_DATE },
    { name: BINDING, modules: true, script: binding, serviceBindings: { RECORDER } },
  ];
}

/** The `wrappedBindings` entry to spread into a Worker's so that
 *  `env[bindingName].writeDataPoint(point)` records into the recorder. */
export function wrapped(bindingName) {
  return { [bindingName]: { scriptName: BINDING } };
}

/** Every data point recorded so far, `{ indexes, blobs, doubles }` in write order. */
export async function points(mf) {
  const res = await (await mf.getWorker(RECORDER)).fetch('http://metrics-recorder.internal/');
  return res.json();
}

/** Forgets the recorded data points. */
export async function clearPoints(mf) {
  await (await (await mf.getWorker(RECORDER)).fetch('http://metrics-recorder.internal/', { method: 'DELETE' })).arrayBuffer();
}
