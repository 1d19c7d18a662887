-- records_spec.lua - the records filters get: lazy fields behave as the
-- fields of a plain table (read, set, delete, iterate, encode, keep across
-- batches, emit); through build/pipeline_feed.
package.path = "lua/?.lua;" .. package.path
local feed = require("spec.support.feed")

local TIME = "2024-05-06T07:08:09.123456789Z"
local INPUT = "@labels\tweb\tapp=shop\ttier=front\n" ..
              "web\tstdout\t" .. TIME .. "\tfirst\n" ..
              "web\tstderr\t" .. TIME .. "\tsecond\n\n"

local function run(src, input, opts)
  local r = feed.run(src, input or INPUT, opts)
  assert.equal(0, r.code, r.err)
  return r
end

describe("a record", function()
  it("has its original fields to read", function()
    local r = run([[return { filters = { function(batch)
      for _, rec in ipairs(batch) do
        rec.seen = table.concat({ rec.line, rec.stream, rec.time, rec.container, rec.name,
                                  rec.image, rec.labels.app, tostring(rec.truncated) }, "|")
      end
    end } }]])
    assert.equal("first|stdout|" .. TIME .. "|id-web|web|img|shop|nil", r.records[1].seen)
    assert.equal("second|stderr|" .. TIME .. "|id-web|web|img|shop|nil", r.records[2].seen)
  end)

  it("is written with every field when the filters changed nothing", function()
    local r = run([[return { filters = { function(batch) return batch end } }]])
    assert.same({ line = "first", stream = "stdout", time = TIME, container = "id-web", name = "web",
                  image = "img", labels = { app = "shop", tier = "front" } }, r.records[1])
  end)

  it("has no host unless its container came from a list of daemons", function()
    local r = run([[return { filters = { function(batch)
      for _, rec in ipairs(batch) do rec.seen = tostring(rec.host) end
    end } }]])
    assert.equal("nil", r.records[1].seen)
    assert.is_nil(r.records[1].host)
  end)

  it("carries its daemon's name as host: read, written after image, set, deleted, iterated", function()
    local input = INPUT:gsub("\n", "\n@host\tweb\tedge-a\n", 1) -- after the labels
    local r = run([[return { filters = { function(batch)
      for _, rec in ipairs(batch) do rec.seen = rec.host end
    end } }]], input)
    assert.equal("edge-a", r.records[1].seen)
    assert.same({ line = "first", stream = "stdout", time = TIME, container = "id-web", name = "web",
                  image = "img", host = "edge-a", labels = { app = "shop", tier = "front" },
                  seen = "edge-a" }, r.records[1])
    assert.truthy(r.lines[1]:find('"image":"img","host":"edge-a","line":"first"', 1, true), r.lines[1])
    -- the same bytes from a record made plain (pairs) as from the lazy one
    local plain = run([[return { filters = { function(batch)
      for _, rec in ipairs(batch) do for _ in pairs(rec) do end; rec.seen = rec.host end
    end } }]], input)
    assert.same(r.lines, plain.lines)
    local changed = run([[return { filters = { function(batch)
      batch[1].host = "other"; batch[2].host = nil
    end } }]], input)
    assert.equal("other", changed.records[1].host)
    assert.is_nil(changed.records[2].host)
    local ctx = run([[return { filters = { function(batch, ctx)
      for _, rec in ipairs(batch) do rec.h = ctx.host end
    end } }]], input)
    assert.equal("edge-a", ctx.records[1].h)
    assert.is_nil(run([[return { filters = { function(batch, ctx)
      for _, rec in ipairs(batch) do rec.h = ctx.host end
    end } }]]).records[1].h)
  end)

  it("takes new values for original fields, and keeps them", function()
    local r = run([[return { filters = {
      function(batch) for _, rec in ipairs(batch) do rec.name = "renamed"; rec.line = "L" end end,
      function(batch) for _, rec in ipairs(batch) do rec.check = rec.name .. rec.line end end,
    } }]])
    assert.equal("renamed", r.records[1].name)
    assert.equal("L", r.records[1].line)
    assert.equal("renamedL", r.records[1].check)
  end)

  it("loses a deleted original field, even one set before it was deleted", function()
    local r = run([[return { filters = { function(batch)
      for _, rec in ipairs(batch) do
        rec.labels = nil
        rec.stream = "x"; rec.stream = nil
        rec.gone = tostring(rec.labels) .. tostring(rec.stream)
      end
    end } }]])
    assert.equal("nilnil", r.records[1].gone)
    assert.is_nil(r.records[1].labels)
    assert.is_nil(r.records[1].stream)
    assert.equal(TIME, r.records[1].time)
  end)

  it("shows every field to pairs, next and rawget, and no metatable", function()
    local r = run([[return { filters = { function(batch)
      local a, b = batch[1], batch[2]
      local keys = {}
      for k in pairs(a) do keys[#keys + 1] = k end
      table.sort(keys)
      a.keys = table.concat(keys, ",")
      a.raw = rawget(b, "time")
      a.mt = tostring(getmetatable(b))
      local c = batch[2]
      local n = 0
      local k = next(c)
      while k do n = n + 1; k = next(c, k) end
      a.count = n
    end } }]])
    assert.equal("container,image,labels,line,name,stream,time", r.records[1].keys)
    assert.equal(TIME, r.records[1].raw)
    assert.equal("nil", r.records[1].mt)
    assert.equal(7, r.records[1].count)
  end)

  it("keeps its fields under a metatable a filter sets", function()
    local r = run([[return { filters = { function(batch)
      for _, rec in ipairs(batch) do
        setmetatable(rec, { __index = function(_, k) return "default " .. k end })
        rec.other = rec.missing
      end
    end } }]])
    assert.equal("default missing", r.records[1].other)
    assert.equal("web", r.records[1].name)
  end)

  it("is encoded whole by engine.json", function()
    local r = run([[local json = require("engine.json")
      return { filters = { function(batch)
        local copy = json.decode(json.encode({ batch[1] }))[1]
        batch[1].decoded = copy.time .. " " .. copy.labels.tier .. " " .. copy.stream
      end } }]])
    assert.equal(TIME .. " front stdout", r.records[1].decoded)
  end)

  it("keeps its fields when a filter holds it past its batch and emits it later", function()
    local input = INPUT .. "web\tstdout\t2024-05-06T07:08:10Z\tthird\n\n"
    local r = run([[
      local held
      return { filters = { { name = "hold", process = function(batch)
        if not held then held = table.remove(batch, 1); return batch end
      end, shutdown = function(ctx)
        collectgarbage(); collectgarbage()
        ctx.emit(held)
      end } } }]], input, { args = { "--lockstep" } })
    local last = r.records[#r.records]
    assert.equal("first", last.line)
    assert.equal("web", last.name)
    assert.equal("stdout", last.stream)
    assert.equal(TIME, last.time)
    assert.equal("shop", last.labels.app)
  end)

  it("keeps its container fields when emitted by a later filter's process", function()
    local r = run([[return { filters = { { name = "dup", process = function(batch, ctx)
      ctx.emit(batch[1])
    end } } }]])
    assert.equal(3, #r.records)
    assert.equal("web", r.records[3].name)
    assert.equal("first", r.records[3].line)
  end)

  it("is written with the same bytes whether or not a filter made it a plain table", function()
    local edits = [[
      local function edit(rec, i)
        if i % 2 == 0 then rec.labels = nil end
        if i == 1 then rec.name = "renamed" end
        if i == 2 then rec.stream = nil end
        rec.n = i
        rec[1] = "first"
        rec[2.5] = "half"
        rec.nested = { a = { b = i }, list = { 1, 2 } }
        rec.flag = i % 2 == 0
        rec.fn = print
        rec.output = "x"
        rec.zz, rec.aa, rec.Time = "z", "a", "T"
      end]]
    local input = INPUT .. "web\tstdout\t2024-05-06T07:08:10Z\tthird \"quoted\" \1\n" ..
                  "web\tstderr\t2024-05-06T07:08:11Z\tfourth\n\n"
    local lazy = run(edits .. [[
      return { filters = { function(batch) for i, rec in ipairs(batch) do edit(rec, i) end end } }]],
      input)
    local plain = run(edits .. [[
      return { filters = { function(batch)
        for i, rec in ipairs(batch) do
          for _ in pairs(rec) do end -- a plain table from here on
          edit(rec, i)
        end
      end } }]], input)
    assert.equal(4, #lazy.records)
    assert.equal(plain.out, lazy.out)
    assert.truthy(lazy.out:find('"labels":{"app":"shop","tier":"front"}', 1, true))
    assert.truthy(lazy.out:find('"name":"renamed"', 1, true))
  end)

  it("lets filters keep records without keeping their batches past half of lua_memory", function()
    local batches = {}
    for b = 1, 120 do
      local batch = {}
      for l = 1, 100 do batch[l] = { "web", nil, nil, ("b%d-l%d "):format(b, l) .. ("x"):rep(1000) } end
      batches[b] = batch
    end
    local src = [[
      local kept = {}
      return { engine = { lua_memory = 8 * 1024 * 1024 },
        filters = { { name = "keep", process = function(batch)
          kept[#kept + 1] = batch[1]
          return {}
        end, shutdown = function(ctx)
          for _, rec in ipairs(kept) do
            ctx.emit({ line = rec.line:sub(1, 12), name = rec.name, stream = rec.stream, time = rec.time })
          end
        end } } }]]
    local r = run(src, feed.input(batches))
    assert.truthy(r.err:find("kept records are made plain tables", 1, true), r.err)
    assert.equal(120, #r.records)
    for b = 1, 120 do
      assert.equal(("b%d-l1 xxxxxx"):format(b):sub(1, 12), r.records[b].line)
      assert.equal("web", r.records[b].name)
      assert.equal("stdout", r.records[b].stream)
      assert.equal(TIME, r.records[b].time)
    end
    -- a filter that keeps nothing never gets there
    local plain = run("return { engine = { lua_memory = 8 * 1024 * 1024 } }", feed.input(batches))
    assert.is_nil(plain.err:find("kept records", 1, true))
    assert.equal(12000, #plain.records)
  end)
end)
