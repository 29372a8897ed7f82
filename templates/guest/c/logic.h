// The guest's logic, in plain C on raw bytes: unit-tested natively by test_logic.c
// (./test.sh), compiled into the component by {{name}}.c (./build.sh).
#ifndef LOGIC_H
#define LOGIC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { KEEP = 0, DROP = 1, REJECT = 4 };

static inline int starts_with(const uint8_t *s, size_t n, const uint8_t *prefix, size_t plen) {
  return n >= plen && memcmp(s, prefix, plen) == 0;
}

// Interceptor: the verdict of one body; a reject's reason goes to *reason.
static inline int decide(const uint8_t *prefix, size_t plen, const uint8_t *body, size_t n,
                         const char **reason) {
  if (n == 0) {
    *reason = "empty body";
    return REJECT;
  }
  return starts_with(body, n, prefix, plen) ? DROP : KEEP;
}

// Router: the channel bit set (bit i = the source's i-th channel) of one body.
static inline uint64_t channels_for(const uint8_t *prefix, size_t plen, const uint8_t *body,
                                    size_t n) {
  return starts_with(body, n, prefix, plen) ? (uint64_t)1 << 1 : (uint64_t)1 << 0;
}

// 32-bit FNV-1a.
static inline uint32_t fnv1a(const uint8_t *data, size_t n) {
  uint32_t h = 0x811c9dc5u;
  for (size_t i = 0; i < n; i++) h = (h ^ data[i]) * 0x01000193u;
  return h;
}

// Sink selector: the sink (index in the group's `sinks`) of one body.
static inline uint32_t sink_for(uint32_t sinks, const uint8_t *body, size_t n) {
  return fnv1a(body, n) % sinks;
}

#endif
