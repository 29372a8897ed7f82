// The guest's logic, in plain JavaScript: unit-tested natively by logic.test.js (node --test),
// bundled into the component by componentize-js with guest.js.

export const KEEP = 0;
export const DROP = 1;
export const REJECT = 4;

function startsWith(bytes, prefix) {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    if (bytes[i] !== prefix[i]) return false;
  }
  return true;
}

// Interceptor: [verdict, reason] for one body (a Uint8Array).
export function decide(dropPrefix, body) {
  if (body.length === 0) return [REJECT, "empty body"];
  if (startsWith(body, dropPrefix)) return [DROP, null];
  return [KEEP, null];
}

// Router: the channel bit set (bit i = the source's i-th channel) of one body.
export function channelsFor(matchPrefix, body) {
  return startsWith(body, matchPrefix) ? 1n << 1n : 1n << 0n;
}

// 32-bit FNV-1a.
export function fnv1a(data) {
  let h = 0x811c9dc5;
  for (const b of data) {
    h = Math.imul(h ^ b, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

// Sink selector: the sink (index in the group's `sinks`) of one body.
export function sinkFor(sinks, body) {
  return fnv1a(body) % sinks;
}

// Each event's body, from a batch's flat `bodies` and `bodyEnds`.
export function* bodies(events) {
  let start = 0;
  for (const end of events.bodyEnds) {
    yield events.bodies.subarray(start, end);
    start = end;
  }
}
