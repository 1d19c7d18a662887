package.path = "spec/?.lua;" .. package.path
local E = require("support.ffi")
local C = E.C

local S = 1000000000LL -- 1 s in ns
local MS = 1000000LL
local T = 1704067200LL * S -- 2024-01-01T00:00:00Z
local MAX = E.INT64_MAX

describe("cursor", function()
  local c
  before_each(function() c = E.cursor(S) end)

  local function deliver(ts, stream, line, floor)
    assert.equals(0, C.cursor_deliver(c, E.key(ts, stream, line), floor or MAX))
  end
  local function seen(ts, stream, line)
    return C.cursor_seen(c, E.key(ts, stream, line)) == 1
  end

  it("starts empty: nothing delivered, since is -1", function()
    assert.equals(-1LL, C.cursor_since(c))
    assert.equals(-1LL, C.cursor_newest(c))
    assert.equals(0, tonumber(C.cursor_window(c)))
    C.cursor_begin_replay(c)
    assert.is_false(seen(T, 1, "x"))
  end)

  it("builds keys from the timestamp, stream, length and bytes", function()
    local a = E.key(T, 1, "hello")
    assert.equals(T, a.ts)
    assert.equals(1, a.stream)
    assert.equals(5, a.len)
    assert.equals(a.hash, E.key(T, 1, "hello").hash)
    assert.are_not.equal(a.hash, E.key(T, 1, "hellp").hash)
    assert.are_not.equal(a.hash, E.key(T, 1, "hello\0").hash)
    assert.are_not.equal(E.key(T, 1, "").hash, E.key(T, 1, "\0").hash)
  end)

  it("skips a replayed key exactly as many times as it was delivered", function()
    -- two chunks of a split line with the same ts and bytes
    deliver(T, 1, string.rep("a", 16384))
    deliver(T, 1, string.rep("a", 16384))
    deliver(T, 1, "end")
    C.cursor_begin_replay(c)
    assert.is_true(seen(T, 1, string.rep("a", 16384)))
    assert.is_true(seen(T, 1, string.rep("a", 16384)))
    assert.is_false(seen(T, 1, string.rep("a", 16384))) -- a third one is new
    assert.is_true(seen(T, 1, "end"))
    assert.is_false(seen(T, 1, "end"))
  end)

  it("does not skip an undelivered line of the other stream stamped inside the margin", function()
    deliver(T, 1, "out 1")
    deliver(T + 500 * MS, 1, "out 2")
    -- stderr wrote at T + 200 ms, but the stream was cut before it arrived
    assert.equals(T - 500 * MS, C.cursor_since(c))
    C.cursor_begin_replay(c)
    assert.is_true(seen(T, 1, "out 1"))
    assert.is_false(seen(T + 200 * MS, 2, "err"))
    assert.is_false(seen(T + 500 * MS, 2, "out 2")) -- same bytes, other stream
    assert.is_true(seen(T + 500 * MS, 1, "out 2"))
  end)

  it("makes every delivery skippable again on each replay", function()
    deliver(T, 1, "a")
    C.cursor_begin_replay(c)
    assert.is_true(seen(T, 1, "a"))
    assert.is_false(seen(T, 1, "a"))
    deliver(T + 1, 2, "new") -- delivered during the replay
    assert.is_false(seen(T + 1, 2, "new"))
    C.cursor_begin_replay(c)
    assert.is_true(seen(T, 1, "a"))
    assert.is_true(seen(T + 1, 2, "new"))
  end)

  it("resumes at newest - margin and forgets older keys", function()
    deliver(T, 1, "a")
    assert.equals(T, C.cursor_newest(c))
    assert.equals(T - S, C.cursor_since(c))
    deliver(T + 5 * S, 1, "b")
    assert.equals(T + 5 * S, C.cursor_newest(c))
    assert.equals(T + 4 * S, C.cursor_since(c))
    assert.equals(1, tonumber(C.cursor_window(c)))
    C.cursor_begin_replay(c)
    assert.is_false(seen(T, 1, "a"))
    assert.is_true(seen(T + 5 * S, 1, "b"))
  end)

  it("keeps the newest timestamp when an older one is delivered later", function()
    deliver(T + S, 1, "late stdout")
    deliver(T + S - 10, 2, "earlier stderr")
    assert.equals(T + S, C.cursor_newest(c))
    assert.equals(T, C.cursor_since(c))
    assert.equals(2, tonumber(C.cursor_window(c)))
  end)

  it("keeps keys from the floor on and resumes there", function()
    -- a line at T is still being assembled while others are delivered
    deliver(T, 2, "err", T)
    deliver(T + 10 * S, 1, "a", T)
    deliver(T + 20 * S, 1, "b", T)
    assert.equals(3, tonumber(C.cursor_window(c)))
    assert.equals(T, C.cursor_since(c))
    C.cursor_begin_replay(c)
    assert.is_true(seen(T, 2, "err"))
    assert.is_true(seen(T + 10 * S, 1, "a"))
    -- the line completes: the floor is released
    deliver(T, 1, "long line", MAX)
    assert.equals(2, tonumber(C.cursor_window(c)))
    -- its key (ts T) is still in the window, but a resume never goes back
    -- to an evicted key ("a", T + 10 s), which would be repeated
    assert.equals(T + 10 * S + 1, C.cursor_since(c))
    C.cursor_begin_replay(c)
    assert.is_false(seen(T + 10 * S, 1, "a"))
    assert.is_true(seen(T, 1, "long line"))
    deliver(T + 30 * S, 1, "c")
    assert.equals(1, tonumber(C.cursor_window(c)))
    assert.equals(T + 29 * S, C.cursor_since(c))
  end)

  it("resumes at the floor even when no key is that old", function()
    deliver(T + 10 * S, 1, "a", T + 2 * S)
    assert.equals(T + 2 * S, C.cursor_since(c))
    deliver(T + 11 * S, 1, "b", MAX)
    assert.equals(T + 10 * S, C.cursor_since(c))
  end)

  it("caps the window at max_keys and resumes past forced-out keys", function()
    c = E.cursor(S, 4)
    for i = 0, 5 do deliver(T + i * MS, 1, "line " .. i) end
    assert.equals(4, tonumber(C.cursor_window(c)))
    -- "line 0" and "line 1" were forced out inside the margin: resuming at
    -- newest - margin would repeat them
    assert.equals(T + 1 * MS + 1, C.cursor_since(c))
    C.cursor_begin_replay(c)
    assert.is_false(seen(T + 1 * MS, 1, "line 1"))
    for i = 2, 5 do assert.is_true(seen(T + i * MS, 1, "line " .. i)) end
    -- once newest - margin passes them, since follows it again
    deliver(T + 3 * S, 1, "later")
    assert.equals(T + 2 * S, C.cursor_since(c))
  end)

  it("does not resume below a key already evicted when a much older line arrives", function()
    deliver(T, 1, "a")
    deliver(T + 10 * S, 1, "b") -- evicts "a"
    deliver(T + 10 * S, 2, "c")
    deliver(T - 5 * S, 2, "very late") -- older than the margin: not covered
    assert.is_true(C.cursor_since(c) > T)
  end)

  it("never returns a negative since", function()
    deliver(500 * MS, 1, "early")
    assert.equals(0LL, C.cursor_since(c))
  end)

  it("finds every key in a window that churned through many evictions", function()
    c = E.cursor(100 * MS, 0)
    local n, step = 20000, MS -- the window holds about 100 keys
    for i = 1, n do
      deliver(T + i * step, i % 2 + 1, "line " .. (i % 7))
      deliver(T + i * step, i % 2 + 1, "line " .. (i % 7)) -- twice each
    end
    assert.equals(202, tonumber(C.cursor_window(c)))
    assert.equals(T + (n - 100) * step, C.cursor_since(c))
    C.cursor_begin_replay(c)
    for i = n - 150, n do
      local k = E.key(T + i * step, i % 2 + 1, "line " .. (i % 7))
      local want = i >= n - 100
      assert.equals(want, C.cursor_seen(c, k) == 1, i)
      assert.equals(want, C.cursor_seen(c, k) == 1, i)
      assert.is_false(C.cursor_seen(c, k) == 1, i)
    end
  end)

  it("keeps the default max_keys bound under a flood inside the margin", function()
    c = E.cursor(10 * S, 0)
    local n = E.CURSOR_MAX_KEYS_DEFAULT + 1000
    for i = 1, n do deliver(T + i, 1, tostring(i)) end
    assert.equals(E.CURSOR_MAX_KEYS_DEFAULT, tonumber(C.cursor_window(c)))
    assert.equals(T + 1000 + 1, C.cursor_since(c))
    C.cursor_begin_replay(c)
    assert.is_false(seen(T + 1000, 1, "1000"))
    assert.is_true(seen(T + 1001, 1, "1001"))
    assert.is_true(seen(T + n, 1, tostring(n)))
  end)

  it("starts a replay over when the stream reconnects before the last one ended", function()
    deliver(T, 1, "a")
    deliver(T + 1, 1, "b")
    C.cursor_begin_replay(c)
    assert.is_true(seen(T, 1, "a"))
    C.cursor_begin_replay(c) -- a second reconnect returns "a" again
    assert.is_true(seen(T, 1, "a"))
    assert.is_true(seen(T + 1, 1, "b"))
    assert.is_false(seen(T, 1, "a"))
    assert.is_false(seen(T + 1, 1, "b"))
  end)

  it("stops skipping a key that left the window during a replay", function()
    deliver(T, 1, "old")
    deliver(T, 1, "old")
    C.cursor_begin_replay(c)
    assert.is_true(seen(T, 1, "old"))
    deliver(T + 5 * S, 1, "much newer") -- evicts both copies of "old"
    assert.equals(1, tonumber(C.cursor_window(c)))
    assert.is_false(seen(T, 1, "old"))
    C.cursor_begin_replay(c)
    assert.is_true(seen(T + 5 * S, 1, "much newer"))
  end)

  it("hashes every byte of a line, in both lanes and the tail", function()
    local base = string.rep("x", 45)
    local hashes = { [tostring(E.key(T, 1, base).hash)] = true }
    for pos = 1, #base do
      local line = base:sub(1, pos - 1) .. "y" .. base:sub(pos + 1)
      local h = tostring(E.key(T, 1, line).hash)
      assert.is_nil(hashes[h], pos)
      hashes[h] = true
    end
  end)
end)
