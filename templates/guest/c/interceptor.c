// {{name}}: a sluice interceptor guest (world `interceptor` of wit/pipeline.wit).
//
// Drops events whose body starts with `config.drop-prefix` (default "DEBUG"), rejects empty
// events (they go to the source's dead-letter channel with the reason) and keeps the rest.
// The logic is decide() in logic.h; ./test.sh unit-tests it natively, ./build.sh builds
// {{name}}.wasm.

#include <stdlib.h>
#include <string.h>

#include "interceptor.h"
#include "logic.h"

static uint8_t *prefix;
static size_t prefix_len;

static void set_prefix(const uint8_t *p, size_t n) {
  free(prefix);
  prefix = malloc(n ? n : 1);
  if (!prefix) abort();
  memcpy(prefix, p, n);
  prefix_len = n;
}

bool exports_interceptor_init(interceptor_config_t *config, interceptor_string_t *err) {
  set_prefix((const uint8_t *)"DEBUG", 5);
  bool ok = true;
  for (size_t i = 0; i < config->len; i++) {
    interceptor_string_t *key = &config->ptr[i].f0, *value = &config->ptr[i].f1;
    if (key->len == 11 && memcmp(key->ptr, "drop-prefix", 11) == 0) {
      if (value->len == 0) {
        interceptor_string_dup(err, "config.drop-prefix must not be empty");
        ok = false;
      } else {
        set_prefix(value->ptr, value->len);
      }
    }
  }
  interceptor_config_free(config);
  return ok;
}

void exports_interceptor_intercept(interceptor_batch_t *events, interceptor_verdicts_t *ret) {
  size_t count = events->body_ends.len;
  uint8_t *codes = calloc(count ? count : 1, 1);
  // Replacement events: one per reject, its body the reason, no headers.
  uint8_t *reasons = NULL;
  size_t reasons_len = 0;
  uint32_t *reason_ends = calloc(count ? count : 1, sizeof(uint32_t));
  uint32_t *header_ends = calloc(count ? count : 1, sizeof(uint32_t));
  if (!codes || !reason_ends || !header_ends) abort();
  size_t rejects = 0;
  uint64_t dropped = 0;
  int changed = 0;
  uint32_t start = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t end = events->body_ends.ptr[i];
    const char *reason = NULL;
    int code = decide(prefix, prefix_len, events->bodies.ptr + start, end - start, &reason);
    codes[i] = (uint8_t)code;
    if (code != KEEP) changed = 1;
    if (code == DROP) dropped++;
    if (code == REJECT) {
      size_t n = strlen(reason);
      reasons = realloc(reasons, reasons_len + n ? reasons_len + n : 1);
      if (!reasons) abort();
      memcpy(reasons + reasons_len, reason, n);
      reasons_len += n;
      reason_ends[rejects++] = (uint32_t)reasons_len;
    }
    start = end;
  }
  if (dropped > 0) {
    interceptor_string_t name;
    interceptor_string_set(&name, "dropped");
    sluice_pipeline_host_counter_add(&name, dropped);
  }
  interceptor_batch_free(events);
  memset(ret, 0, sizeof *ret);
  if (!changed) {
    free(codes);
    free(reasons);
    free(reason_ends);
    free(header_ends);
    return;
  }
  ret->codes.ptr = codes;
  ret->codes.len = count;
  ret->replacements.bodies.ptr = reasons;
  ret->replacements.bodies.len = reasons_len;
  ret->replacements.body_ends.ptr = reason_ends;
  ret->replacements.body_ends.len = rejects;
  ret->replacements.header_ends.ptr = header_ends;
  ret->replacements.header_ends.len = rejects;
}
