/* encode_json.c - the generic HTTP bodies: NDJSON and a JSON array of the
 * records (see encode.h). Elements that are not tables are skipped. */
#include <lua.h>

#include "encode.h"
#include "encode_record.h"

int encode_ndjson(strbuf_t *b, lua_State *L, int idx)
{
  return output_encode_batch(b, L, idx, 0);
}

int encode_json_array(strbuf_t *b, lua_State *L, int idx)
{
  size_t i, count;
  int rc = 0, first = 1;

  idx = encode_abs(L, idx);
  if (!lua_checkstack(L, 4) || encode_lit(b, "[") < 0)
    return -1;
  count = lua_objlen(L, idx);
  for (i = 1; i <= count && rc == 0; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TTABLE) {
      if (!first)
        rc = encode_lit(b, ",");
      if (rc == 0)
        rc = json_add_record(b, L, lua_gettop(L));
      first = 0;
    }
    lua_pop(L, 1);
  }
  if (rc < 0)
    return -1;
  return encode_lit(b, "]");
}
