// {{name}}: a sluice sink selector guest (world `sink-selector` of wit/pipeline.wit).
//
// Sends events with the same body to the same sink of the group: sink = FNV-1a(body) mod
// `config.sinks` (default 2). The logic is sink_for() in logic.h; ./test.sh unit-tests it
// natively, ./build.sh builds {{name}}.wasm.

#include <stdlib.h>
#include <string.h>

#include "logic.h"
#include "sink_selector.h"

static uint32_t sinks = 2;

bool exports_sink_selector_init(sink_selector_config_t *config, sink_selector_string_t *err) {
  sinks = 2;
  bool ok = true;
  for (size_t i = 0; i < config->len; i++) {
    sink_selector_string_t *key = &config->ptr[i].f0, *value = &config->ptr[i].f1;
    if (key->len == 5 && memcmp(key->ptr, "sinks", 5) == 0) {
      uint32_t n = 0;
      int digits = value->len > 0 && value->len < 10;
      for (size_t j = 0; digits && j < value->len; j++) {
        if (value->ptr[j] < '0' || value->ptr[j] > '9') digits = 0;
        n = n * 10 + (value->ptr[j] - '0');
      }
      if (!digits || n == 0) {
        sink_selector_string_dup(err, "config.sinks must be a positive number");
        ok = false;
      } else {
        sinks = n;
      }
    }
  }
  sink_selector_config_free(config);
  return ok;
}

void exports_sink_selector_select(sink_selector_batch_t *events, sink_selector_list_u32_t *ret) {
  size_t count = events->body_ends.len;
  uint32_t *choice = malloc((count ? count : 1) * sizeof(uint32_t));
  if (!choice) abort();
  uint32_t start = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t end = events->body_ends.ptr[i];
    choice[i] = sink_for(sinks, events->bodies.ptr + start, end - start);
    start = end;
  }
  sink_selector_batch_free(events);
  ret->ptr = choice;
  ret->len = count;
}
