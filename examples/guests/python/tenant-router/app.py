"""Tenant router: sends each event to the channels configured for its tenant header.

Config (agent keys `selector.config.*`):
  header          header naming the tenant (default "tenant")
  route.<tenant>  space-separated channel indices for that tenant, e.g. "1" or "0 2"
  default         channel indices for any other tenant (default "0"); "" drops the event

Build: componentize-py -d ../../../../wit -w router componentize app -o tenant_router.wasm
"""

import struct

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types

_U32 = struct.Struct("<I")

_header = "tenant"
_routes = {}
_default = 1


def _mask(indices: str) -> int:
    mask = 0
    for word in indices.split():
        if not word.isdigit() or int(word) > 63:
            raise Err(f"`{word}` is not a channel index (0-63)")
        mask |= 1 << int(word)
    return mask


def header(buf: bytes, start: int, end: int, key: bytes):
    """The value of header `key` in one event's encoded headers, or None."""
    pos = start
    while pos < end:
        (klen,) = _U32.unpack_from(buf, pos)
        pos += 4
        k = buf[pos : pos + klen]
        pos += klen
        (vlen,) = _U32.unpack_from(buf, pos)
        pos += 4
        if k == key:
            return buf[pos : pos + vlen]
        pos += vlen
    return None


class WitWorld(wit_world.WitWorld):
    def init(self, config):
        global _header, _routes, _default
        _routes = {}
        for key, value in config:
            if key == "header":
                _header = value
            elif key == "default":
                _default = _mask(value)
            elif key.startswith("route."):
                _routes[key[len("route.") :].encode()] = _mask(value)
        host.log(types.Level.INFO, f"tenant router: {len(_routes)} tenants on header {_header}")

    def route(self, events):
        key = _header.encode()
        hbuf = events.headers
        out = []
        start = 0
        unknown = 0
        for end in events.header_ends:
            tenant = header(hbuf, start, end, key)
            mask = _routes.get(tenant)
            if mask is None:
                mask = _default
                unknown += 1
            out.append(mask)
            start = end
        if unknown:
            host.counter_add("UnknownTenant", unknown)
        return out
