// {{name}}: a sluice sink selector guest (world `sink-selector` of wit/pipeline.wit).
//
// Sends events with the same body to the same sink of the group: sink = FNV-1a(body) mod
// `config.sinks` (default 2). The logic is sinkFor() in logic.js; ./test.sh unit-tests it
// natively, ./build.sh builds {{name}}.wasm.

import { bodies, sinkFor } from "./logic.js";

let sinks = 2;

export function init(config) {
  for (const [key, value] of config) {
    if (key === "sinks") {
      const n = Number.parseInt(value, 10);
      if (!(n > 0)) throw `config.sinks: \`${value}\` is not a positive number`;
      sinks = n;
    }
  }
}

export function select(events) {
  const out = new Uint32Array(events.bodyEnds.length);
  let i = 0;
  for (const body of bodies(events)) {
    out[i++] = sinkFor(sinks, body);
  }
  return out;
}
