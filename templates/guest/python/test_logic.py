"""Unit tests of logic.py, run natively: python3 -m unittest -v (./test.sh)."""

import unittest
from types import SimpleNamespace

import logic


class LogicTest(unittest.TestCase):
    def test_interceptor_drops_by_prefix_and_rejects_empty(self):
        self.assertEqual(logic.decide(b"DEBUG", b"DEBUG noise"), (logic.DROP, None))
        self.assertEqual(logic.decide(b"DEBUG", b""), (logic.REJECT, "empty body"))
        self.assertEqual(logic.decide(b"DEBUG", b"hello"), (logic.KEEP, None))

    def test_router_sends_errors_to_the_second_channel(self):
        self.assertEqual(logic.channels_for(b"ERROR", b"ERROR disk full"), 0b10)
        self.assertEqual(logic.channels_for(b"ERROR", b"hello"), 0b01)

    def test_sink_selector_is_sticky_by_body(self):
        self.assertEqual(logic.fnv1a(b"a"), 0xE40C292C)
        self.assertEqual(logic.sink_for(3, b"a"), 0xE40C292C % 3)

    def test_bodies_splits_the_flat_batch(self):
        batch = SimpleNamespace(bodies=b"abcde", body_ends=[2, 2, 5])
        self.assertEqual(list(logic.bodies(batch)), [b"ab", b"", b"cde"])


if __name__ == "__main__":
    unittest.main()
