local E = require("spec.support.ffi")

local web = {
  id = "4f8c2d1e9a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d",
  name = "/web-1",
  image = "docker.io/library/nginx:1.25",
  labels = { "com.docker.compose.project=shop", "tier=frontend", "debug" },
}
local db = {
  id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
  name = "/db",
  image = "postgres:16",
  labels = {},
}

local function rules(list)
  local out = {}
  for _, r in ipairs(list) do
    out[#out + 1] = { kind = r[1], pattern = r[2], exclude = r[3] == "exclude" }
  end
  return E.selection(out)
end

describe("selection", function()
  it("selects every container when there are no rules", function()
    local s = rules({})
    assert.is_true(E.match(s, web))
    assert.is_true(E.match(s, db))
  end)

  it("matches names as globs without the leading '/'", function()
    local s = rules({ { "name", "web-*" } })
    assert.is_true(E.match(s, web))
    assert.is_false(E.match(s, db))
    assert.is_true(E.match(rules({ { "name", "db" } }), db))
    assert.is_true(E.match(rules({ { "name", "/db" } }), db))
    assert.is_false(E.match(rules({ { "name", "d" } }), db))
    assert.is_true(E.match(rules({ { "name", "[a-d]?" } }), db))
  end)

  it("matches ids by prefix of the full id", function()
    assert.is_true(E.match(rules({ { "id", "4f8c2d" } }), web))
    assert.is_true(E.match(rules({ { "id", web.id } }), web))
    assert.is_false(E.match(rules({ { "id", "8c2d" } }), web))
    assert.is_false(E.match(rules({ { "id", "4f8*" } }), web))
    assert.is_false(E.match(rules({ { "id", web.id .. "0" } }), web))
  end)

  it("matches a label by key, or by key and value glob", function()
    assert.is_true(E.match(rules({ { "label", "tier" } }), web))
    assert.is_true(E.match(rules({ { "label", "debug" } }), web))
    assert.is_true(E.match(rules({ { "label", "tier=front*" } }), web))
    assert.is_true(E.match(rules({ { "label", "com.docker.compose.project=shop" } }), web))
    assert.is_true(E.match(rules({ { "label", "debug=" } }), web))
    assert.is_false(E.match(rules({ { "label", "tier=back*" } }), web))
    assert.is_false(E.match(rules({ { "label", "tie" } }), web))
    assert.is_false(E.match(rules({ { "label", "tier" } }), db))
  end)

  it("matches images as globs, '*' crossing '/'", function()
    assert.is_true(E.match(rules({ { "image", "*nginx:*" } }), web))
    assert.is_true(E.match(rules({ { "image", "postgres:16" } }), db))
    assert.is_false(E.match(rules({ { "image", "nginx*" } }), web))
  end)

  it("selects what matches any include rule", function()
    local s = rules({ { "name", "db" }, { "label", "tier=frontend" } })
    assert.is_true(E.match(s, web))
    assert.is_true(E.match(s, db))
    assert.is_false(E.match(s, { id = "ff", name = "/cache", image = "redis", labels = {} }))
  end)

  it("drops what matches an exclude rule, even when included", function()
    local s = rules({ { "image", "*" }, { "label", "debug", "exclude" } })
    assert.is_false(E.match(s, web))
    assert.is_true(E.match(s, db))
    s = rules({ { "name", "web-1", "exclude" } })
    assert.is_false(E.match(s, web))
    assert.is_true(E.match(s, db))
  end)

  it("owns copies of its patterns and frees them", function()
    local pattern = string.rep("x", 10) .. "*"
    local s = E.selection({ { kind = "name", pattern = pattern } })
    assert.equals(pattern, require("ffi").string(s.include[0].pattern))
    assert.is_true(E.match(s, { id = "1", name = "/xxxxxxxxxxyz", image = "i" }))
    E.C.selection_free(s)
    assert.equals(0, tonumber(s.n_include))
    assert.is_true(E.match(s, db))
  end)
end)
