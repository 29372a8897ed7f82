"""The guest's logic, in plain Python: unit-tested natively by test_logic.py, called by app.py."""

KEEP, DROP, REJECT = 0, 1, 4


def decide(drop_prefix: bytes, body: bytes):
    """Interceptor: (verdict, reason) for one body."""
    if not body:
        return REJECT, "empty body"
    if body.startswith(drop_prefix):
        return DROP, None
    return KEEP, None


def channels_for(match_prefix: bytes, body: bytes) -> int:
    """Router: the channel bit set (bit i = the source's i-th channel) of one body."""
    return 1 << 1 if body.startswith(match_prefix) else 1 << 0


def fnv1a(data: bytes) -> int:
    """32-bit FNV-1a."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def sink_for(sinks: int, body: bytes) -> int:
    """Sink selector: the sink (index in the group's `sinks`) of one body."""
    return fnv1a(body) % sinks


def bodies(events):
    """Each event's body, from a batch's flat `bodies` and `body_ends`."""
    start = 0
    for end in events.body_ends:
        yield events.bodies[start:end]
        start = end
