/* cursor.c - libFuzzer target for the resume cursor and its de-duplication
 * window (engine/cursor.c).
 *
 * The input is a program of deliver / begin_replay / seen operations on few
 * distinct keys (so that keys repeat). A model counts what was delivered;
 * the invariants checked after every step:
 *  - a line reported delivered (replayed or repeated) was delivered;
 *  - within one replay, a key is reported replayed at most as many times
 *    as it had been delivered when the replay began;
 *  - cursor_repeated counts the lines reported repeated;
 *  - the window holds at most max_keys keys, and no more than delivered;
 *  - cursor_newest is the newest delivered time; cursor_since is -1 only
 *    before the first delivery, else 0 .. newest + 1. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"

#define N_KEYS 64 /* 8 times x 2 streams x 4 contents */

static const char *const contents[4] = {"a", "b", "", "a longer line"};

static cursor_key_t key_of(unsigned k)
{
  int64_t ts = 1000000000LL * 1700000000LL + (int64_t)(k & 7) * 400000000LL;
  int stream = 1 + ((k >> 3) & 1);
  const char *c = contents[(k >> 4) & 3];
  return cursor_key(ts, stream, c, strlen(c));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 2)
    return 0;
  size_t max_keys = 1 + data[0] % 40;
  int64_t margin = (int64_t)(data[1] % 8) * 250000000LL;
  cursor_t *c = cursor_new(margin, max_keys);
  if (!c)
    return 0;
  unsigned delivered[N_KEYS] = {0};    /* total deliveries */
  unsigned at_replay[N_KEYS] = {0};    /* deliveries when the replay began */
  unsigned skipped[N_KEYS] = {0};      /* skips in the current replay */
  size_t total = 0;
  uint64_t repeated = 0;
  int64_t newest = -1;

  for (size_t i = 2; i < size; i++) {
    unsigned op = data[i] >> 6, k = data[i] & (N_KEYS - 1);
    cursor_key_t key = key_of(k);
    if (op == 0 || op == 1) {
      int64_t floor_ts = op == 0 ? INT64_MAX : key.ts - 300000000LL;
      if (cursor_deliver(c, &key, floor_ts) == 0) {
        delivered[k]++;
        total++;
      }
      if (key.ts > newest)
        newest = key.ts;
    } else if (op == 2) {
      cursor_begin_replay(c);
      memcpy(at_replay, delivered, sizeof at_replay);
      memset(skipped, 0, sizeof skipped);
    } else {
      int v = cursor_seen(c, &key, (k & 32) ? CURSOR_PIECE : 0);
      if (v != CURSOR_NEW && delivered[k] == 0)
        abort(); /* a line never delivered reported as delivered */
      if (v == CURSOR_REPLAYED && ++skipped[k] > at_replay[k])
        abort(); /* skipped more copies than were delivered */
      if (v == CURSOR_REPEATED)
        repeated++;
      if (cursor_repeated(c) != repeated)
        abort();
    }
    size_t w = cursor_window(c);
    if (w > max_keys || w > total)
      abort();
    if (cursor_newest(c) != newest)
      abort();
    int64_t since = cursor_since(c);
    if (newest < 0 ? since != -1 : (since < 0 || since > newest + 1))
      abort();
  }
  cursor_free(c);
  return 0;
}
