local E = require("spec.support.ffi")
local ffi = require("ffi")

if not pcall(ffi.typeof, "idtable_t") then
  ffi.cdef [[
typedef struct idlink { struct idlink *next; const char *id; } idlink_t;
typedef struct idtable { idlink_t *buckets[1024]; size_t count; } idtable_t;
void idtable_add(idtable_t *t, idlink_t *l, const char *id);
idlink_t *idtable_find(const idtable_t *t, const char *id);
void idtable_remove(idtable_t *t, idlink_t *l);
idlink_t *idtable_first(const idtable_t *t);
idlink_t *idtable_next(const idtable_t *t, const idlink_t *l);
]]
end
local C = E.C

-- n links with ids "id1".."idn" (the strings kept alive in the table)
local function filled(n)
  local t = ffi.new("idtable_t")
  local links, ids = ffi.new("idlink_t[?]", n), {}
  for i = 1, n do
    ids[i] = ffi.new("char[?]", 16, "id" .. i)
    C.idtable_add(t, links + (i - 1), ids[i])
  end
  return t, links, ids
end

local function all_ids(t)
  local out = {}
  local l = C.idtable_first(t)
  while l ~= nil do
    out[#out + 1] = ffi.string(l.id)
    l = C.idtable_next(t, l)
  end
  table.sort(out)
  return out
end

describe("idtable", function()
  it("finds each entry by id, and nothing for an unknown id", function()
    local t, links, ids = filled(3000) -- more entries than buckets: chains
    assert.equal(3000, tonumber(t.count))
    for _, i in ipairs { 1, 17, 1024, 1025, 3000 } do
      assert.equal(links + (i - 1), C.idtable_find(t, "id" .. i))
    end
    assert.is_true(C.idtable_find(t, "id0") == nil)
    assert.is_true(C.idtable_find(t, "id30000") == nil)
    assert.equal(3000, #ids) -- kept alive until here
  end)

  it("visits every entry once, also while removing the current one", function()
    local t, links, ids = filled(2500)
    local want = {}
    for i = 1, 2500 do want[i] = "id" .. i end
    table.sort(want)
    assert.same(want, all_ids(t))
    -- remove every even id during a walk
    local l = C.idtable_first(t)
    local visited = 0
    while l ~= nil do
      local after = C.idtable_next(t, l)
      visited = visited + 1
      if tonumber(ffi.string(l.id):sub(3)) % 2 == 0 then C.idtable_remove(t, l) end
      l = after
    end
    assert.equal(2500, visited)
    assert.equal(1250, tonumber(t.count))
    for _, id in ipairs(all_ids(t)) do assert.equal(1, tonumber(id:sub(3)) % 2) end
    assert.is_true(C.idtable_find(t, "id2") == nil)
    assert.is_true(links ~= nil and #ids == 2500) -- kept alive until here
  end)

  it("is empty after removing everything", function()
    local t, links, ids = filled(5)
    for i = 0, 4 do C.idtable_remove(t, links + i) end
    assert.equal(0, tonumber(t.count))
    assert.is_true(C.idtable_first(t) == nil)
    assert.equal(5, #ids)
  end)
end)
