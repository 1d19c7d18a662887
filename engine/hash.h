/* hash.h - FNV-1a, the one byte hash of the engine's tables and ids (the
 * id table's buckets, the record id's lanes, the encoders' record groups).
 * Not cryptographic. Pure: any thread. */
#ifndef ENGINE_HASH_H
#define ENGINE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV64_OFFSET 0xcbf29ce484222325ULL
#define HASH_FNV64_PRIME 0x100000001b3ULL

/* Goes on hashing len bytes of p from h (HASH_FNV64_OFFSET to start). */
static inline uint64_t hash_fnv64(uint64_t h, const void *p, size_t len) {
  const unsigned char *b = p;
  for (size_t i = 0; i < len; i++) h = (h ^ b[i]) * HASH_FNV64_PRIME;
  return h;
}

#endif
