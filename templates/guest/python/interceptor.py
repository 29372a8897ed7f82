"""{{name}}: a sluice interceptor guest (world `interceptor` of wit/pipeline.wit).

Drops events whose body starts with `config.drop-prefix` (default "DEBUG"), rejects empty
events (they go to the source's dead-letter channel with the reason) and keeps the rest. The
logic is logic.decide; ./test.sh unit-tests it natively, ./build.sh builds {{name}}.wasm.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types

import logic

_drop_prefix = b"DEBUG"


class WitWorld(wit_world.WitWorld):
    def init(self, config):
        global _drop_prefix
        for key, value in config:
            if key == "drop-prefix":
                if not value:
                    raise Err("config.drop-prefix must not be empty")
                _drop_prefix = value.encode()

    def intercept(self, events):
        codes = bytearray()
        reasons = []
        changed = False
        dropped = 0
        for body in logic.bodies(events):
            code, reason = logic.decide(_drop_prefix, body)
            codes.append(code)
            if code != logic.KEEP:
                changed = True
            if code == logic.DROP:
                dropped += 1
            if code == logic.REJECT:
                reasons.append(reason.encode())
        if dropped:
            host.counter_add("dropped", dropped)
        if not changed:
            return types.Verdicts(codes=b"", replacements=_batch([]))
        return types.Verdicts(codes=bytes(codes), replacements=_batch(reasons))


def _batch(bodies):
    """Replacement events with these bodies and no headers (a reject's reason is its body)."""
    ends = []
    total = 0
    for b in bodies:
        total += len(b)
        ends.append(total)
    return types.Batch(
        bodies=b"".join(bodies), body_ends=ends, headers=b"", header_ends=[0] * len(bodies)
    )
