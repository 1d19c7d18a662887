-- record_id_spec.lua - the record id (engine/batch.h batch_rec_id): r.id in
-- filters (through build/pipeline_feed), the documented hash computed here
-- independently, and the occurrence count (engine/occurrence.h) that makes
-- a line's id the same on every read of the log (through the FFI).
package.path = "lua/?.lua;" .. package.path
local feed = require("spec.support.feed")
local E = require("spec.support.ffi")
local C = E.C
local ffi = require("ffi")
local bit = require("bit")

local TIME = "2024-05-06T07:08:09.123456789Z"

-- Runs records { name, stream, time, text } through a filter that copies
-- r.id into `got`; returns the output records.
local function ids_of(batches)
  local r = feed.run([[return { filters = {
    function(batch) for _, rec in ipairs(batch) do rec.got = rec.id end end } }]], batches)
  assert.equal(0, r.code, r.err)
  return r.records
end

-- The id as batch.h documents it, computed without the engine: container
-- id (with its NUL), then ts (8 bytes), stream (1), len (4), hash (8), occ
-- (4), little-endian; two FNV-1a lanes, each finished by a 64-bit mix.
local U = ffi.typeof("uint64_t")
local PRIME = U(0x100000001b3ULL)
local function fnv(h, s)
  for i = 1, #s do h = bit.bxor(h, U(s:byte(i))) * PRIME end
  return h
end
local function le(v, n)
  local out = {}
  v = U(v)
  for i = 1, n do
    out[i] = string.char(tonumber(bit.band(v, 0xff)))
    v = bit.rshift(v, 8)
  end
  return table.concat(out)
end
local function mix(x)
  x = bit.bxor(x, bit.rshift(x, 30)) * U(0xBF58476D1CE4E5B9ULL)
  x = bit.bxor(x, bit.rshift(x, 27)) * U(0x94D049BB133111EBULL)
  return bit.bxor(x, bit.rshift(x, 31))
end
local function expected_id(container, ts, stream, line, occ)
  local hash = fnv(U(0xcbf29ce484222325ULL), line) -- a line not from a reader
  local v = container .. "\0" .. le(ts, 8) .. le(stream, 1) .. le(#line, 4) .. le(hash, 8) .. le(occ, 4)
  local hi = mix(fnv(U(0xcbf29ce484222325ULL), v))
  local lo = mix(bit.bxor(fnv(U(0x6c62272e07bb0142ULL), v), hi * U(0x9E3779B97F4A7C15ULL)))
  return bit.tohex(hi, 16) .. bit.tohex(lo, 16)
end

describe("r.id", function()
  it("is 32 lowercase hex digits, the documented hash of the line", function()
    local recs = ids_of({ { { "web", nil, TIME, "hello" }, { "web", "stderr,occ=3", TIME, "" } } })
    assert.equal(2, #recs)
    assert.matches("^[0-9a-f]+$", recs[1].got)
    assert.equal(32, #recs[1].got)
    local ts = E.ts_parse(TIME)
    assert.equal(expected_id("id-web", ts, 1, "hello", 0), recs[1].got)
    assert.equal(expected_id("id-web", ts, 2, "", 3), recs[2].got)
  end)

  it("is the same for the same line however often it is read; its parts tell lines apart", function()
    local base = { "web", "stdout", TIME, "same text" }
    local function with(i, v)
      local r = { base[1], base[2], base[3], base[4] }
      r[i] = v
      return r
    end
    local batches = { { base, base }, { base },
      { with(2, "stdout,occ=1") }, { with(2, "stdout,occ=2") },
      { with(1, "db") }, { with(2, "stderr") }, { with(3, "2024-05-06T07:08:09.123456790Z") },
      { with(4, "same texT") } }
    local recs = ids_of(batches)
    local again = ids_of(batches)
    assert.equal(#recs, #again)
    for i = 1, #recs do assert.equal(recs[i].got, again[i].got) end
    -- the same line: the same id, in one batch or another
    assert.equal(recs[1].got, recs[2].got)
    assert.equal(recs[1].got, recs[3].got)
    -- occurrence, container, stream, time, bytes: each makes another id
    local seen = {}
    for i = 3, #recs do
      assert.is_nil(seen[recs[i].got], "id of record " .. i .. " repeats")
      seen[recs[i].got] = true
    end
  end)

  it("is not a field of the record: outputs do not write it", function()
    local recs = ids_of({ { { "web", nil, TIME, "x" } } })
    assert.is_nil(recs[1].id)
    assert.is_string(recs[1].got)
  end)

  it("cannot be set: the filter fails", function()
    local r = feed.run([[return { filters = {
      { name = "set", process = function(batch) batch[1].id = "mine" end } } }]],
      { { { "web", nil, TIME, "x" } } })
    assert.is_truthy(r.err:find("filter set %(on_error=pass%): .-r%.id is the record's id and cannot be set"),
      r.err)
    assert.equal(1, #r.records)
    assert.is_nil(r.records[1].id)
  end)

  it("is nil for a record a filter made or made a plain table", function()
    local r = feed.run([[return { filters = {
      function(batch, ctx)
        ctx.emit({ line = "made" })
        for _ in pairs(batch[1]) do end -- pairs makes it a plain table
        batch[1].plain_id = tostring(batch[1].id)
        batch[2].lazy_id = batch[2].id
        batch[1].id = "a field like any other"
      end } }]], { { { "web", nil, TIME, "a" }, { "web", nil, TIME, "b" } } })
    assert.equal(0, r.code, r.err)
    assert.same({ "a", "b", "made" }, feed.lines_of(r.records))
    assert.equal("nil", r.records[1].plain_id)
    assert.equal("a field like any other", r.records[1].id)
    assert.equal(32, #r.records[2].lazy_id)
  end)
end)

describe("occurrences (engine/occurrence.h)", function()
  local S = 1000000000LL
  local T = 1704067200LL * S

  -- A log: { ts, stream, text } in the order the daemon returns them (each
  -- stream's timestamps grow). Equal lines share a nanosecond; the
  -- whole-second ones are Podman-like (equal lines back to back are kept);
  -- the ones marked true are equal pieces of one line cut at line_max.
  local LOG = {
    { T, 1, "a" }, { T, 1, "b" }, { T, 2, "a" }, { T, 1, "a" }, { T, 1, "b" }, { T, 1, "a" },
    { T + 5, 1, "a" }, { T + 5, 2, "a" }, { T + 5, 1, "c" }, { T + 5, 1, "a" },
    { T + S, 1, "tick" }, { T + S, 1, "tick" }, { T + S, 1, "tick" }, { T + S, 2, "tick" },
    { T + 2 * S, 1, "a" },
    { T + 2 * S + 7, 1, "x", true }, { T + 2 * S + 7, 1, "x", true }, { T + 2 * S + 7, 1, "x", true },
    { T + 2 * S + 7, 1, "end" },
  }

  -- Reads LOG from since as reader.c does (occurrence_seen, then
  -- cursor_deliver when new); delivers at most max lines into cursor c
  -- (nil: all). Returns { [index in LOG] = occurrence } of the delivered
  -- lines, and their indexes in order.
  local function read(c, since, max)
    local o = E.occurrence()
    local n, oom = ffi.new("uint32_t[1]"), ffi.new("int[1]")
    local got, order = {}, {}
    C.cursor_begin_replay(c)
    for i, l in ipairs(LOG) do
      if max and #order >= max then break end
      if l[1] >= since then
        local k = E.key(l[1], l[2], l[3])
        if C.occurrence_seen(o, c, k, l[4] and E.CURSOR_PIECE or 0, n, oom) == C.CURSOR_NEW then
          assert.equal(0, C.cursor_deliver(c, k, E.INT64_MAX))
          got[i] = n[0]
          order[#order + 1] = i
        end
      end
    end
    assert.equal(0, oom[0])
    return got, order
  end

  it("counts equal lines per stream and timestamp", function()
    local got = read(E.cursor(S), 0)
    local occ = {}
    for i = 1, #LOG do occ[i] = got[i] end
    assert.same({ 0, 0, 0, 1, 1, 2, 0, 0, 0, 1, 0, 1, 2, 0, 0, 0, 1, 2, 0 }, occ)
  end)

  it("gives each line the same occurrence when a restart reads the log again", function()
    local want = read(E.cursor(S), 0)
    for cut = 0, #LOG do
      -- the first engine delivered `cut` lines and saved them (acknowledged)
      -- before it was killed; the checkpoint holds their keys
      local first = E.cursor(S)
      local _, order = read(first, 0, cut)
      local saved = E.cursor(S)
      for _, i in ipairs(order) do
        assert.equal(0, C.cursor_deliver(saved, E.key(LOG[i][1], LOG[i][2], LOG[i][3]), E.INT64_MAX))
      end
      local since = C.cursor_since(saved)
      local again = read(saved, since < 0 and 0 or since)
      -- every line once over both runs, with the occurrence of a whole read
      for _, i in ipairs(order) do
        assert.is_nil(again[i], "line " .. i .. " delivered twice (cut " .. cut .. ")")
        again[i] = want[i]
      end
      for i = 1, #LOG do assert.equal(want[i], again[i], "line " .. i .. " (cut " .. cut .. ")") end
    end
  end)

  it("starts again at 0 when cleared (a new connection)", function()
    local o = E.occurrence()
    local n = ffi.new("uint32_t[1]")
    local k = E.key(T, 1, "x")
    for want = 0, 40 do -- past the first table's size
      assert.equal(0, C.occurrence_count(o, E.key(T, 1, "y" .. want), n))
      assert.equal(0, C.occurrence_count(o, k, n))
      assert.equal(want, n[0])
    end
    C.occurrence_clear(o)
    assert.equal(0, C.occurrence_count(o, k, n))
    assert.equal(0, n[0])
    -- an older line (the daemon going back) counts as 0 and changes nothing
    assert.equal(0, C.occurrence_count(o, E.key(T - 1, 1, "x"), n))
    assert.equal(0, n[0])
    assert.equal(0, C.occurrence_count(o, k, n))
    assert.equal(1, n[0])
  end)
end)
