/* protobuf.h - the protocol buffers wire format, for writers of a fixed
 * schema (encode_otlp.c): tags, varints, fixed64, length-delimited fields.
 *
 * Nested messages are written in place: pb_open appends the field's tag and
 * a one-byte length, pb_close sets the length once the message is written,
 * moving its bytes when the length needs more than one byte. Opened
 * messages are closed innermost first. Every function appends to b and
 * returns 0, or -1 when out of memory (b then holds a partial message). */
#ifndef ENGINE_PROTOBUF_H
#define ENGINE_PROTOBUF_H

#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2 };

/* Bytes of v as a varint (1 to 10). */
size_t pb_varint_len(uint64_t v);
int pb_add_varint(strbuf_t *b, uint64_t v);
int pb_add_tag(strbuf_t *b, unsigned field, unsigned wire);
/* A varint field (uint32/uint64/int64/bool/enum: an int64 below 0 as its
 * two's complement, 10 bytes). */
int pb_add_uint(strbuf_t *b, unsigned field, uint64_t v);
/* A fixed64 field, little endian; pb_add_double: the bits of a double. */
int pb_add_fixed64(strbuf_t *b, unsigned field, uint64_t v);
int pb_add_double(strbuf_t *b, unsigned field, double v);
/* A bytes field holding s[0..n) as they are. */
int pb_add_bytes(strbuf_t *b, unsigned field, const char *s, size_t n);
/* A string field: s[0..n) with invalid UTF-8 sequences replaced by U+FFFD,
 * as the JSON writer does (json.h), so that the field is valid UTF-8. */
int pb_add_string(strbuf_t *b, unsigned field, const char *s, size_t n);
/* Opens the message field `field`: *mark is where its length goes. */
int pb_open(strbuf_t *b, unsigned field, size_t *mark);
/* Closes the message opened at mark: everything appended since is its
 * body. */
int pb_close(strbuf_t *b, size_t mark);

#endif
