// {{name}}: a sluice interceptor guest (world `interceptor` of wit/pipeline.wit).
//
// Drops events whose body starts with `config.drop-prefix` (default "DEBUG"), rejects empty
// events (they go to the source's dead-letter channel with the reason) and keeps the rest.
// The logic is decide() in logic.js; ./test.sh unit-tests it natively, ./build.sh builds
// {{name}}.wasm.

import { counterAdd } from "sluice:pipeline/host@0.1.0";

import { DROP, KEEP, REJECT, bodies, decide } from "./logic.js";

let dropPrefix = new TextEncoder().encode("DEBUG");

export function init(config) {
  for (const [key, value] of config) {
    if (key === "drop-prefix") {
      if (value === "") throw "config.drop-prefix must not be empty";
      dropPrefix = new TextEncoder().encode(value);
    }
  }
}

// Replacement events with these bodies and no headers (a reject's reason is its body).
function replacements(reasons) {
  const parts = reasons.map((r) => new TextEncoder().encode(r));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  const ends = new Uint32Array(parts.length);
  let at = 0;
  parts.forEach((p, i) => {
    out.set(p, at);
    at += p.length;
    ends[i] = at;
  });
  return { bodies: out, bodyEnds: ends, headers: new Uint8Array(0), headerEnds: new Uint32Array(parts.length) };
}

export function intercept(events) {
  const codes = new Uint8Array(events.bodyEnds.length);
  const reasons = [];
  let changed = false;
  let dropped = 0;
  let i = 0;
  for (const body of bodies(events)) {
    const [code, reason] = decide(dropPrefix, body);
    codes[i++] = code;
    if (code !== KEEP) changed = true;
    if (code === DROP) dropped++;
    if (code === REJECT) reasons.push(reason);
  }
  if (dropped > 0) counterAdd("dropped", BigInt(dropped));
  if (!changed) return { codes: new Uint8Array(0), replacements: replacements([]) };
  return { codes, replacements: replacements(reasons) };
}
