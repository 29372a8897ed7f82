// Sticky-by-key sink selector: every event with the same key goes to the same sink of the
// group, so per-key ordering holds across a load-balanced group.
//
// Config (agent keys `processor.config.*`):
//   header  header holding the key (default "key")
//   sinks   number of sinks in the group (default 2)
// Events without the header go to sink 0. The hash is FNV-1a over the key's UTF-8 bytes, the
// same as the Rust example, so both pick the same sinks.
//
// Build: npm ci && npm run build  (componentize-js, WASI features disabled)

import { log, counterAdd } from "sluice:pipeline/host@0.1.0";

let header = new TextEncoder().encode("key");
let sinks = 2;

export function init(config) {
  for (const [key, value] of config) {
    if (key === "header") {
      header = new TextEncoder().encode(value);
    } else if (key === "sinks") {
      const n = Number.parseInt(value, 10);
      if (!(n > 0)) {
        throw `config.sinks: \`${value}\` is not a positive number`;
      }
      sinks = n;
    }
  }
  log("info", `sticky selector: ${sinks} sinks keyed on header ${new TextDecoder().decode(header)}`);
}

function fnv1a(buf, start, end) {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    h = Math.imul(h ^ buf[i], 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function sameBytes(buf, start, len, other) {
  if (len !== other.length) return false;
  for (let i = 0; i < len; i++) {
    if (buf[start + i] !== other[i]) return false;
  }
  return true;
}

export function select(events) {
  const buf = events.headers;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const ends = events.headerEnds;
  const out = new Uint32Array(ends.length);
  let start = 0;
  let keyless = 0;
  for (let i = 0; i < ends.length; i++) {
    const end = ends[i];
    let sink = 0;
    let found = false;
    let pos = start;
    while (pos < end) {
      const klen = view.getUint32(pos, true);
      const kstart = pos + 4;
      const vlen = view.getUint32(kstart + klen, true);
      const vstart = kstart + klen + 4;
      if (sameBytes(buf, kstart, klen, header)) {
        sink = fnv1a(buf, vstart, vstart + vlen) % sinks;
        found = true;
        break;
      }
      pos = vstart + vlen;
    }
    if (!found) keyless++;
    out[i] = sink;
    start = end;
  }
  if (keyless > 0) counterAdd("KeylessEvents", BigInt(keyless));
  return out;
}
