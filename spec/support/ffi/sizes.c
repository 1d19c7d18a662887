/* sizes.c - the sizes of the structs spec/support/ffi.lua declares again
 * for LuaJIT's FFI. Linked into build/libengine-test.so only; ffi.lua
 * compares them with its own declarations when it loads, so a header that
 * changed without ffi.lua fails every FFI spec at once, with the name. */
#include <string.h>
#include "cursor.h"
#include "decode.h"
#include "select.h"

size_t engine_test_sizeof(const char *name);

size_t engine_test_sizeof(const char *name) {
  static const struct {
    const char *name;
    size_t size;
  } sizes[] = {
      {"decode_line_t", sizeof(decode_line_t)},   {"decode_buf_t", sizeof(decode_buf_t)},
      {"decode_partial_t", sizeof(decode_partial_t)}, {"decoder_t", sizeof(decoder_t)},
      {"cursor_key_t", sizeof(cursor_key_t)},     {"cursor_state_t", sizeof(cursor_state_t)},
      {"select_rule_t", sizeof(select_rule_t)},   {"selection_t", sizeof(selection_t)},
  };
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
    if (strcmp(sizes[i].name, name) == 0) return sizes[i].size;
  return 0;
}
