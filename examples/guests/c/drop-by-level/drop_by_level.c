// Drops events whose level is below a threshold: the C twin of the Rust drop-by-level guest.
//
// The level is the `level` header (`config.header` names another one) or, without it, the
// first word of the body (`DEBUG ...`, `warning:`). Config: `config.min-level` (default `info`):
// events below it are dropped; events without a recognisable level are kept. A batch where
// everything is kept sends back an empty verdict list: no byte per event.
//
// Build (what the tests do, see tests/src/guests.rs):
//   sluice-guest-tool c-bindings --wit ../../../../wit --world interceptor --out target/bindings
//   python3 -m ziglang cc -target wasm32-wasi -mexec-model=reactor -O2 -msimd128 -s \
//       -I target/bindings drop_by_level.c target/bindings/interceptor.c \
//       target/bindings/interceptor_component_type.o -o target/drop_by_level.core.wasm
//   sluice-guest-tool componentize target/drop_by_level.core.wasm -o target/drop_by_level.wasm

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "interceptor.h"

enum { KEEP = 0, DROP = 1 };

static const char *const LEVELS[] = {"trace", "debug", "info", "warn", "error"};

static int lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// Whether `s[0..n]` equals the lower-case word `w`, ignoring ASCII case.
static int word_is(const uint8_t *s, size_t n, const char *w) {
  size_t len = strlen(w);
  if (n != len) return 0;
  for (size_t i = 0; i < n; i++) {
    if (lower(s[i]) != (uint8_t)w[i]) return 0;
  }
  return 1;
}

// The rank of a level word (0 = trace .. 4 = error; `warning` = warn, `fatal` = error; a
// trailing ':' is ignored), or -1.
static int rank(const uint8_t *s, size_t n) {
  if (n > 0 && s[n - 1] == ':') n--;
  for (int i = 0; i < 5; i++) {
    if (word_is(s, n, LEVELS[i])) return i;
  }
  if (word_is(s, n, "warning")) return 3;
  if (word_is(s, n, "fatal")) return 4;
  return -1;
}

// Whether a body starting with `c` can start with a level word: most bodies are decided here.
static int level_initial(uint8_t c) {
  switch (c | 0x20) {
    case 't': case 'd': case 'i': case 'w': case 'e': case 'f': return 1;
    default: return 0;
  }
}

static uint32_t read_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint8_t *header_name;  // `config.header`, default "level"
static size_t header_len;
static int min_rank = 2;  // info

// Finds `header_name` among one event's encoded headers; returns its value or NULL.
static const uint8_t *find_header(const uint8_t *h, size_t n, size_t *value_len) {
  size_t at = 0;
  while (at + 4 <= n) {
    uint32_t klen = read_u32(h + at);
    if (klen > n - at - 4) return NULL;
    const uint8_t *key = h + at + 4;
    at += 4 + klen;
    if (at + 4 > n) return NULL;
    uint32_t vlen = read_u32(h + at);
    if (vlen > n - at - 4) return NULL;
    const uint8_t *value = h + at + 4;
    at += 4 + vlen;
    if (klen == header_len && memcmp(key, header_name, klen) == 0) {
      *value_len = vlen;
      return value;
    }
  }
  return NULL;
}

static void set_error(interceptor_string_t *err, const char *msg) {
  interceptor_string_dup(err, msg);
}

bool exports_interceptor_init(interceptor_config_t *config, interceptor_string_t *err) {
  const char *deflt = "level";
  free(header_name);
  header_len = strlen(deflt);
  header_name = malloc(header_len);
  if (!header_name) abort();
  memcpy(header_name, deflt, header_len);
  min_rank = 2;
  bool ok = true;
  for (size_t i = 0; i < config->len; i++) {
    interceptor_string_t *key = &config->ptr[i].f0, *value = &config->ptr[i].f1;
    if (key->len == 9 && memcmp(key->ptr, "min-level", 9) == 0) {
      min_rank = rank(value->ptr, value->len);
      if (min_rank < 0) {
        set_error(err, "config.min-level: unknown level (trace, debug, info, warn, error)");
        ok = false;
      }
    } else if (key->len == 6 && memcmp(key->ptr, "header", 6) == 0) {
      free(header_name);
      header_len = value->len;
      header_name = malloc(header_len ? header_len : 1);
      if (!header_name) abort();
      memcpy(header_name, value->ptr, header_len);
    }
  }
  interceptor_config_free(config);
  return ok;
}

void exports_interceptor_intercept(interceptor_batch_t *events, interceptor_verdicts_t *ret) {
  size_t count = events->body_ends.len;
  uint8_t *codes = NULL;  // allocated at the first drop: an all-kept batch sends no bytes
  uint64_t dropped = 0;
  uint32_t body_start = 0, header_start = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t body_end = events->body_ends.ptr[i];
    uint32_t header_end = events->header_ends.ptr[i];
    const uint8_t *body = events->bodies.ptr + body_start;
    size_t body_len = body_end - body_start;
    int level = -1;
    size_t vlen = 0;
    const uint8_t *value =
        header_end > header_start
            ? find_header(events->headers.ptr + header_start, header_end - header_start, &vlen)
            : NULL;
    if (value) {
      level = rank(value, vlen);
    } else if (body_len > 0 && level_initial(body[0])) {
      // A level word is at most 8 bytes ("warning:"): look no further.
      size_t n = body_len < 9 ? body_len : 9, end = 0;
      while (end < n && body[end] != ' ') end++;
      level = rank(body, end);
    }
    if (level >= 0 && level < min_rank) {
      if (!codes) {
        codes = calloc(count, 1);
        if (!codes) abort();
      }
      codes[i] = DROP;
      dropped++;
    }
    body_start = body_end;
    header_start = header_end;
  }
  if (dropped > 0) {
    interceptor_string_t name;
    interceptor_string_set(&name, "DroppedByLevel");
    sluice_pipeline_host_counter_add(&name, dropped);
  }
  interceptor_batch_free(events);
  memset(ret, 0, sizeof *ret);
  ret->codes.ptr = codes;
  ret->codes.len = codes ? count : 0;
}
