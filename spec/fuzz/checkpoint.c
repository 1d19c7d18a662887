/* checkpoint.c - libFuzzer target for the cursor file reader
 * (engine/checkpoint.c).
 *
 * Any bytes go through checkpoint_parse. What it accepts must write back to
 * text that parses again to the same number of containers, and whose own
 * text is identical (the format is canonical after one round); every saved
 * cursor must restore. Malformed input must be refused, never crash. The
 * reader of oversized files (checkpoint_parse_large) gets the same bytes:
 * what it accepts must write back to text both readers accept. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

/* The reader of oversized files: what it accepts, it writes back readable. */
static void large(const uint8_t *data, size_t size)
{
  checkpoint_t *a = checkpoint_parse_large((const char *)data, size, 1000000000LL);
  if (!a)
    return;
  size_t len;
  char *t = checkpoint_text(a, &len);
  if (!t)
    abort();
  checkpoint_t *b = checkpoint_parse(t, len, 1000000000LL);
  checkpoint_t *c = checkpoint_parse_large(t, len, 1000000000LL);
  if (!b || !c || checkpoint_count(b) != checkpoint_count(a) || checkpoint_count(c) != checkpoint_count(a))
    abort();
  free(t);
  checkpoint_free(a);
  checkpoint_free(b);
  checkpoint_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  large(data, size);
  checkpoint_t *a = checkpoint_parse((const char *)data, size, 1000000000LL);
  if (!a)
    return 0;
  size_t len1, len2;
  char *t1 = checkpoint_text(a, &len1);
  if (!t1)
    abort();
  checkpoint_t *b = checkpoint_parse(t1, len1, 1000000000LL);
  if (!b)
    abort(); /* what the engine writes, it must read */
  char *t2 = checkpoint_text(b, &len2);
  if (!t2 || checkpoint_count(b) > checkpoint_count(a))
    abort();
  /* a second round changes nothing */
  checkpoint_t *c = checkpoint_parse(t2, len2, 1000000000LL);
  size_t len3;
  char *t3 = c ? checkpoint_text(c, &len3) : NULL;
  if (!t3 || len3 != len2 || memcmp(t2, t3, len2) != 0)
    abort();
  free(t1);
  free(t2);
  free(t3);
  checkpoint_free(a);
  checkpoint_free(b);
  checkpoint_free(c);
  return 0;
}
