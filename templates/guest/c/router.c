// {{name}}: a sluice channel router guest (world `router` of wit/pipeline.wit).
//
// Sends events whose body starts with `config.match-prefix` (default "ERROR") to the source's
// second channel (bit 1) and every other event to its first (bit 0). The logic is
// channels_for() in logic.h; ./test.sh unit-tests it natively, ./build.sh builds {{name}}.wasm.

#include <stdlib.h>
#include <string.h>

#include "logic.h"
#include "router.h"

static uint8_t *prefix;
static size_t prefix_len;

static void set_prefix(const uint8_t *p, size_t n) {
  free(prefix);
  prefix = malloc(n ? n : 1);
  if (!prefix) abort();
  memcpy(prefix, p, n);
  prefix_len = n;
}

bool exports_router_init(router_config_t *config, router_string_t *err) {
  set_prefix((const uint8_t *)"ERROR", 5);
  bool ok = true;
  for (size_t i = 0; i < config->len; i++) {
    router_string_t *key = &config->ptr[i].f0, *value = &config->ptr[i].f1;
    if (key->len == 12 && memcmp(key->ptr, "match-prefix", 12) == 0) {
      if (value->len == 0) {
        router_string_dup(err, "config.match-prefix must not be empty");
        ok = false;
      } else {
        set_prefix(value->ptr, value->len);
      }
    }
  }
  router_config_free(config);
  return ok;
}

void exports_router_route(router_batch_t *events, router_list_u64_t *ret) {
  size_t count = events->body_ends.len;
  uint64_t *masks = malloc((count ? count : 1) * sizeof(uint64_t));
  if (!masks) abort();
  uint32_t start = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t end = events->body_ends.ptr[i];
    masks[i] = channels_for(prefix, prefix_len, events->bodies.ptr + start, end - start);
    start = end;
  }
  router_batch_free(events);
  ret->ptr = masks;
  ret->len = count;
}
