local ffi = require("ffi")
local E = require("spec.support.ffi")
local C = E.C

local S = 1000000000LL
local T = 1704067200LL * S
local ID = string.rep("ab", 32)

local function parse(text)
  local cp = C.checkpoint_parse(text, #text, S)
  return cp ~= nil and ffi.gc(cp, C.checkpoint_free) or nil
end

local function resume(cp)
  local c = C.checkpoint_resume(cp, ID)
  assert(c ~= nil, "a cursor for " .. ID)
  return ffi.gc(c, C.cursor_free)
end

local function key_text(ts, stream, line)
  local k = E.key(ts, stream, line)
  return string.format("%s,%d,%d,%s", tostring(ts):gsub("LL$", ""), stream, #line,
                       bit.tohex(tonumber(bit.rshift(k.hash, 32)), 8) ..
                       bit.tohex(tonumber(bit.band(k.hash, 0xffffffffULL)), 8))
end

local function file(version, keys)
  return string.format('{"version":%d,"containers":{"%s":{"newest":"%s","floor":"%s",' ..
                       '"evicted":null,"keys":["%s"]}}}', version, ID,
                       tostring(T + 2):gsub("LL$", ""), tostring(E.INT64_MAX):gsub("LL$", ""),
                       table.concat(keys, '","'))
end

describe("checkpoint file", function()
  it("restores the window of a current file: replayed lines are skipped", function()
    local cp = assert(parse(file(2, { key_text(T, 1, "a"), key_text(T + 2, 2, "b") })))
    local c = resume(cp)
    assert.equals(T + 2, C.cursor_newest(c))
    assert.equals(T + 2 - S, C.cursor_since(c))
    C.cursor_begin_replay(c)
    assert.equals(1, C.cursor_seen(c, E.key(T, 1, "a"), 0))
    assert.equals(1, C.cursor_seen(c, E.key(T + 2, 2, "b"), 0))
    assert.equals(0, C.cursor_seen(c, E.key(T + 1, 1, "new"), 0))
  end)

  it("writes what it read", function()
    local text = file(2, { key_text(T, 1, "a") })
    local len = ffi.new("size_t[1]")
    local out = C.checkpoint_text(assert(parse(text)), len)
    assert(out ~= nil)
    local again = ffi.string(out, len[0])
    ffi.C.free(out)
    assert.truthy(again:find('"version":2', 1, true))
    assert.truthy(again:find(key_text(T, 1, "a"), 1, true))
  end)

  it("resumes right after the newest line from a version 1 file (keys of the old hash)", function()
    local cp = assert(parse(file(1, { "1704067200000000000,1,1,af63bd4c8601b7be" })))
    local c = resume(cp)
    assert.equals(T + 3, C.cursor_since(c))
    assert.equals(0, tonumber(C.cursor_window(c)))
  end)

  it("bounds what one container's entry holds: its newest 16384 keys, resuming past the others", function()
    local keys = {}
    for i = 1, 40000 do keys[i] = key_text(T + i, 1, "l" .. i) end
    local text = file(2, keys):gsub('"newest":"%d+"', '"newest":"' .. tostring(T + 40000):gsub("LL$", "") .. '"')
    local cp = assert(parse(text))
    local len = ffi.new("size_t[1]")
    local out = C.checkpoint_text(cp, len)
    assert(out ~= nil)
    local again = ffi.string(out, len[0])
    ffi.C.free(out)
    local n = select(2, again:gsub('"%-?%d+,%d,%d+,%x+"', ""))
    assert.equals(16384, n)
    assert.truthy(again:find(key_text(T + 40000, 1, "l40000"), 1, true))
    assert.falsy(again:find('"' .. key_text(T + 40000 - 16384, 1, "l" .. (40000 - 16384)) .. '"', 1, true))
    -- the keys that left move the resume point past them: nothing repeats
    local c = resume(cp)
    assert.equals(T + 40000 - 16384 + 1, C.cursor_since(c))
    C.cursor_begin_replay(c)
    assert.equals(1, C.cursor_seen(c, E.key(T + 40000, 1, "l40000"), 0))
  end)

  it("refuses an unknown version", function()
    assert.is_nil(parse(file(3, { key_text(T, 1, "a") })))
  end)
end)
