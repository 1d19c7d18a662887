/* bulk_reply.c - libFuzzer target for the Elasticsearch _bulk reply reader
 * (elasticsearch_bulk_errors in engine/encode_elasticsearch.c).
 *
 * Any bytes are a reply: the result is -1 (not a _bulk reply), 0 (every
 * item succeeded) or the number of failed items, and the reason is always a
 * NUL-terminated string inside its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char err[64];
  memset(err, 'x', sizeof err);
  int n = elasticsearch_bulk_errors((const char *)data, size, err, sizeof err);
  if (n < -1)
    abort();
  if (n != 0 && memchr(err, '\0', sizeof err) == NULL)
    abort();
  return 0;
}
