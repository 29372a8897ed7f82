// Unit tests of logic.h, compiled and run natively by ./test.sh.
#include <stdio.h>
#include <stdlib.h>

#include "logic.h"

static int failures = 0;

#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                \
    }                                                            \
  } while (0)

#define B(s) (const uint8_t *)(s), sizeof(s) - 1

int main(void) {
  const char *reason = NULL;
  CHECK(decide(B("DEBUG"), B("DEBUG noise"), &reason) == DROP);
  CHECK(decide(B("DEBUG"), B("hello"), &reason) == KEEP);
  CHECK(decide(B("DEBUG"), B(""), &reason) == REJECT && strcmp(reason, "empty body") == 0);
  CHECK(channels_for(B("ERROR"), B("ERROR disk full")) == 2);
  CHECK(channels_for(B("ERROR"), B("hello")) == 1);
  CHECK(fnv1a(B("a")) == 0xe40c292cu);
  CHECK(sink_for(3, B("a")) == 0xe40c292cu % 3);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return EXIT_FAILURE;
  }
  printf("test_logic: all checks passed\n");
  return EXIT_SUCCESS;
}
