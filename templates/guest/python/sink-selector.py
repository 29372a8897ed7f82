"""{{name}}: a sluice sink selector guest (world `sink-selector` of wit/pipeline.wit).

Sends events with the same body to the same sink of the group: sink = FNV-1a(body) mod
`config.sinks` (default 2). The logic is logic.sink_for; ./test.sh unit-tests it natively,
./build.sh builds {{name}}.wasm.
"""

import wit_world
from componentize_py_types import Err

import logic

_sinks = 2


class WitWorld(wit_world.WitWorld):
    def init(self, config):
        global _sinks
        for key, value in config:
            if key == "sinks":
                if not value.isdigit() or int(value) == 0:
                    raise Err(f"config.sinks: `{value}` is not a positive number")
                _sinks = int(value)

    def select(self, events):
        return [logic.sink_for(_sinks, body) for body in logic.bodies(events)]
