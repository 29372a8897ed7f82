// {{name}}: a sluice channel router guest (world `router` of wit/pipeline.wit).
//
// Sends events whose body starts with `config.match-prefix` (default "ERROR") to the source's
// second channel (bit 1) and every other event to its first (bit 0). The logic is
// channelsFor() in logic.js; ./test.sh unit-tests it natively, ./build.sh builds {{name}}.wasm.

import { bodies, channelsFor } from "./logic.js";

let matchPrefix = new TextEncoder().encode("ERROR");

export function init(config) {
  for (const [key, value] of config) {
    if (key === "match-prefix") {
      if (value === "") throw "config.match-prefix must not be empty";
      matchPrefix = new TextEncoder().encode(value);
    }
  }
}

export function route(events) {
  const out = new BigUint64Array(events.bodyEnds.length);
  let i = 0;
  for (const body of bodies(events)) {
    out[i++] = channelsFor(matchPrefix, body);
  }
  return out;
}
