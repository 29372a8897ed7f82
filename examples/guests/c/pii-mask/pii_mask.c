// PII masking interceptor: masks e-mail local parts (`bob@example.com` -> `***@example.com`)
// and 16-digit card numbers written as four groups of four digits (`**** **** **** ****`).
// Masked events are replaced, with the header `pii-masked=1` added; other events are kept,
// so a batch without PII sends back only its verdict bytes.
//
// Build (what the tests do, see tests/src/guests.rs):
//   sluice-guest-tool c-bindings --wit ../../../../wit --world interceptor --out target/bindings
//   python3 -m ziglang cc -target wasm32-wasi -mexec-model=reactor -O2 -msimd128 -s \
//       -I target/bindings pii_mask.c target/bindings/interceptor.c \
//       target/bindings/interceptor_component_type.o -o target/pii_mask.core.wasm
//   sluice-guest-tool componentize target/pii_mask.core.wasm -o target/pii_mask.wasm

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "interceptor.h"

#ifdef __wasm_simd128__
#include <wasm_simd128.h>
#endif

// A growable byte buffer.
typedef struct {
  uint8_t *ptr;
  size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap * 2 : 256;
  while (cap < b->len + extra) cap *= 2;
  b->ptr = realloc(b->ptr, cap);
  if (!b->ptr) abort();
  b->cap = cap;
}

static void buf_push(buf_t *b, const uint8_t *data, size_t n) {
  if (n == 0) return;
  buf_reserve(b, n);
  memcpy(b->ptr + b->len, data, n);
  b->len += n;
}

static void buf_u32(buf_t *b, uint32_t v) {
  uint8_t le[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};
  buf_push(b, le, 4);
}

typedef struct {
  uint32_t *ptr;
  size_t len, cap;
} ends_t;

static void ends_push(ends_t *e, uint32_t v) {
  if (e->len == e->cap) {
    e->cap = e->cap ? e->cap * 2 : 64;
    e->ptr = realloc(e->ptr, e->cap * sizeof(uint32_t));
    if (!e->ptr) abort();
  }
  e->ptr[e->len++] = v;
}

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static int is_local_char(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
         c == '_' || c == '-' || c == '+';
}

// The first index at or after `i` whose byte is in '0'..'@' (digits, '@' and a few
// punctuation marks), or `n`: only such a byte can start something to mask. With wasm SIMD
// (-msimd128) it looks at 16 bytes per step, so a body without digits or '@' is skipped at a
// fraction of a byte-by-byte loop's cost.
static size_t skip(const uint8_t *s, size_t i, size_t n) {
#ifdef __wasm_simd128__
  const v128_t base = wasm_i8x16_splat(0x30), span = wasm_i8x16_splat(0x11);
  while (i + 16 <= n) {
    v128_t d = wasm_i8x16_sub(wasm_v128_load(s + i), base);
    uint32_t hits = wasm_i8x16_bitmask(wasm_u8x16_lt(d, span));
    if (hits) return i + __builtin_ctz(hits);
    i += 16;
  }
#endif
  while (i < n && (uint8_t)(s[i] - 0x30) > 0x10) i++;
  return i;
}

// Returns how many things were masked in `s`; when that is not 0, `out` holds the masked body.
// One pass that copies nothing until it finds something to mask, then copies whole runs: the
// common event (no PII) costs one read of its bytes.
static int mask(const uint8_t *s, size_t n, buf_t *out) {
  int masked = 0;
  size_t run = 0;  // start of the input not yet copied to `out`
  for (size_t i = skip(s, 0, n); i < n; i = skip(s, i + 1, n)) {
    uint8_t c = s[i];
    if (is_digit(c)) {
      // A card number: dddd dddd dddd dddd, not glued to other digits.
      if (i + 19 > n || (i > 0 && is_digit(s[i - 1]))) continue;
      int ok = 1;
      for (size_t k = 1; k < 19 && ok; k++) {
        ok = (k % 5 == 4) ? s[i + k] == ' ' : is_digit(s[i + k]);
      }
      if (ok && (i + 19 == n || !is_digit(s[i + 19]))) {
        buf_push(out, s + run, i - run);
        buf_push(out, (const uint8_t *)"**** **** **** ****", 19);
        i += 18;
        run = i + 1;
        masked++;
      }
    } else if (c == '@' && i + 1 < n && is_local_char(s[i + 1])) {
      // An e-mail: the local part before '@' becomes "***".
      size_t start = i;
      while (start > run && is_local_char(s[start - 1])) start--;
      if (start < i) {
        buf_push(out, s + run, start - run);
        buf_push(out, (const uint8_t *)"***@", 4);
        run = i + 1;
        masked++;
      }
    }
  }
  if (masked) buf_push(out, s + run, n - run);
  return masked;
}

bool exports_interceptor_init(interceptor_config_t *config, interceptor_string_t *err) {
  (void)err;
  interceptor_config_free(config);
  return true;
}

void exports_interceptor_intercept(interceptor_batch_t *events, interceptor_verdicts_t *ret) {
  size_t count = events->body_ends.len;
  uint8_t *codes = malloc(count ? count : 1);
  if (!codes) abort();
  buf_t bodies = {0}, headers = {0}, scratch = {0};
  ends_t body_ends = {0}, header_ends = {0};
  uint32_t body_start = 0, header_start = 0;
  uint64_t masked_events = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t body_end = events->body_ends.ptr[i];
    uint32_t header_end = events->header_ends.ptr[i];
    scratch.len = 0;
    if (mask(events->bodies.ptr + body_start, body_end - body_start, &scratch) > 0) {
      codes[i] = 2;  // replace
      masked_events++;
      buf_push(&bodies, scratch.ptr, scratch.len);
      ends_push(&body_ends, (uint32_t)bodies.len);
      buf_push(&headers, events->headers.ptr + header_start, header_end - header_start);
      buf_u32(&headers, 10);
      buf_push(&headers, (const uint8_t *)"pii-masked", 10);
      buf_u32(&headers, 1);
      buf_push(&headers, (const uint8_t *)"1", 1);
      ends_push(&header_ends, (uint32_t)headers.len);
    } else {
      codes[i] = 0;  // keep
    }
    body_start = body_end;
    header_start = header_end;
  }
  free(scratch.ptr);
  if (masked_events == 0) {
    // Everything kept: an empty verdict list says so without a byte per event.
    free(codes);
    codes = NULL;
    count = 0;
  } else {
    interceptor_string_t name;
    interceptor_string_set(&name, "MaskedEvents");
    sluice_pipeline_host_counter_add(&name, masked_events);
  }
  interceptor_batch_free(events);
  ret->codes.ptr = codes;
  ret->codes.len = count;
  ret->replacements.bodies.ptr = bodies.ptr;
  ret->replacements.bodies.len = bodies.len;
  ret->replacements.body_ends.ptr = body_ends.ptr;
  ret->replacements.body_ends.len = body_ends.len;
  ret->replacements.headers.ptr = headers.ptr;
  ret->replacements.headers.len = headers.len;
  ret->replacements.header_ends.ptr = header_ends.ptr;
  ret->replacements.header_ends.len = header_ends.len;
}
