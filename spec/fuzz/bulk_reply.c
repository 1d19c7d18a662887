/* bulk_reply.c - libFuzzer target for the Elasticsearch _bulk reply reader
 * (es_reply_* in engine/encode_elasticsearch.c).
 *
 * Any bytes are a reply, fed in slices whose sizes the first byte chooses:
 * the reader never reads out of bounds, and every failed item has a
 * NUL-terminated reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  es_reply_t *r = es_reply_new();
  const es_item_t *items;
  size_t n, i, step;

  if (r == NULL || size == 0) {
    es_reply_free(r);
    return 0;
  }
  step = (size_t)data[0] % 17 + 1;
  for (i = 1; i < size; i += step)
    es_reply_feed(r, (const char *)data + i, size - i < step ? size - i : step);
  es_reply_items(r, &items, &n);
  for (i = 0; i < n; i++)
    if (items[i].reason != NULL && strlen(items[i].reason) > 300)
      abort();
  es_reply_free(r);
  return 0;
}
