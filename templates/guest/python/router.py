"""{{name}}: a sluice channel router guest (world `router` of wit/pipeline.wit).

Sends events whose body starts with `config.match-prefix` (default "ERROR") to the source's
second channel (bit 1) and every other event to its first (bit 0). The logic is
logic.channels_for; ./test.sh unit-tests it natively, ./build.sh builds {{name}}.wasm.
"""

import wit_world
from componentize_py_types import Err

import logic

_match_prefix = b"ERROR"


class WitWorld(wit_world.WitWorld):
    def init(self, config):
        global _match_prefix
        for key, value in config:
            if key == "match-prefix":
                if not value:
                    raise Err("config.match-prefix must not be empty")
                _match_prefix = value.encode()

    def route(self, events):
        return [logic.channels_for(_match_prefix, body) for body in logic.bodies(events)]
