/* timestamp.c - libFuzzer target for the RFC3339Nano parser and formatter
 * (engine/timestamp.c).
 *
 * Any bytes go through ts_parse; whatever it accepts must format and parse
 * back to the same nanosecond. The first 8 bytes are also taken as an int64
 * time, which must survive format -> parse exactly; ts_format_since must
 * stay inside its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "timestamp.h"

static void round_trip(int64_t ns)
{
  char out[TS_LEN + 1];
  int64_t back;
  size_t used;
  ts_format(ns, out);
  if (strlen(out) != TS_LEN)
    abort();
  if (ts_parse(out, TS_LEN, &back, &used) != 0 || used != TS_LEN || back != ns)
    abort();
  char since[32];
  ts_format_since(ns, since);
  if (memchr(since, '\0', sizeof since) == NULL)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* An exact-size copy, so a read past the given length is caught. */
  char *s = malloc(size ? size : 1);
  if (!s)
    abort();
  memcpy(s, data, size);
  int64_t ns;
  size_t used;
  if (ts_parse(s, size, &ns, &used) == 0) {
    if (used < 20 || used > size)
      abort();
    round_trip(ns);
    /* The canonical form is its own formatting. */
    char out[TS_LEN + 1];
    ts_format(ns, out);
    if (used == TS_LEN && s[19] == '.' && s[29] == 'Z' && memcmp(out, s, TS_LEN) != 0)
      abort();
  }
  free(s);
  if (size >= 8) {
    int64_t v;
    memcpy(&v, data, sizeof v);
    round_trip(v);
  }
  return 0;
}
