// Unit tests of logic.js, run natively: node --test (./test.sh).
import { test } from "node:test";
import assert from "node:assert/strict";

import { DROP, KEEP, REJECT, bodies, channelsFor, decide, fnv1a, sinkFor } from "./logic.js";

const bytes = (s) => new TextEncoder().encode(s);

test("interceptor drops by prefix and rejects empty bodies", () => {
  assert.deepEqual(decide(bytes("DEBUG"), bytes("DEBUG noise")), [DROP, null]);
  assert.deepEqual(decide(bytes("DEBUG"), bytes("")), [REJECT, "empty body"]);
  assert.deepEqual(decide(bytes("DEBUG"), bytes("hello")), [KEEP, null]);
});

test("router sends errors to the second channel", () => {
  assert.equal(channelsFor(bytes("ERROR"), bytes("ERROR disk full")), 0b10n);
  assert.equal(channelsFor(bytes("ERROR"), bytes("hello")), 0b01n);
});

test("sink selector is sticky by body", () => {
  assert.equal(fnv1a(bytes("a")), 0xe40c292c);
  assert.equal(sinkFor(3, bytes("a")), 0xe40c292c % 3);
});

test("bodies splits the flat batch", () => {
  const got = [...bodies({ bodies: bytes("abcde"), bodyEnds: new Uint32Array([2, 2, 5]) })];
  assert.deepEqual(got.map((b) => new TextDecoder().decode(b)), ["ab", "", "cde"]);
});
