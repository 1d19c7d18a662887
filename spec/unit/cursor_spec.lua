local E = require("spec.support.ffi")
local C = E.C
local ffi = require("ffi")

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
    return C.cursor_seen(c, E.key(ts, stream, line), 0) == 1
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
      assert.equals(want, C.cursor_seen(c, k, 0) == 1, i)
      assert.equals(want, C.cursor_seen(c, k, 0) == 1, i)
      -- a third copy: older than the newest line of its stream (or that
      -- line itself, stamped to the ns), it cannot be new; the newest
      -- line of all is stamped on a whole second (T + 20 s): new
      local third = (want and i < n) and 2 or 0
      assert.equals(third, C.cursor_seen(c, k, 0), i)
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
    -- the same connection going back: the daemon repeats itself
    assert.equals(C.CURSOR_REPEATED, C.cursor_seen(c, E.key(T, 1, "a"), 0))
    assert.equals(C.CURSOR_REPEATED, C.cursor_seen(c, E.key(T + 1, 1, "b"), 0))
    assert.equals(2ULL, C.cursor_repeated(c))
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

  describe("within one live stream", function()
    local NEW, REPLAYED, REPEATED = 0, 1, 2
    -- What a reader does with a line: classify it, deliver it when new.
    local function line(ts, stream, text, flags)
      local k = E.key(ts, stream, text)
      local v = C.cursor_seen(c, k, flags or 0)
      if v == NEW then assert.equals(0, C.cursor_deliver(c, k, MAX)) end
      return v
    end
    -- Numbered lines first..last on a stream, i ms after T + 1 us.
    local function run(first, last, stream, want)
      for i = first, last do
        assert.equals(want, line(T + 1000 + i * MS, stream or 1, "line " .. i), i)
      end
    end

    it("drops a run the daemon sends again after a rotation, and counts it", function()
      C.cursor_begin_replay(c)
      run(1, 100, 1, NEW)
      run(94, 100, 1, REPEATED) -- ends with the newest line
      run(101, 110, 1, NEW)
      assert.equals(7ULL, C.cursor_repeated(c))
    end)

    it("drops the newest line sent again on its own", function()
      C.cursor_begin_replay(c)
      run(1, 10, 1, NEW)
      run(10, 10, 1, REPEATED)
      run(10, 10, 1, REPEATED)
      run(11, 12, 1, NEW)
      assert.equals(2ULL, C.cursor_repeated(c))
    end)

    it("drops runs repeated on stderr only, and leaves stdout alone", function()
      C.cursor_begin_replay(c)
      local function at(i) return T + 1000 + i * MS end
      for i = 1, 40 do -- odd lines on stderr, even ones on stdout
        assert.equals(NEW, line(at(i), i % 2 + 1, "line " .. i))
      end
      for i = 21, 39, 2 do -- stderr goes back
        assert.equals(REPEATED, line(at(i), 2, "line " .. i), i)
      end
      assert.equals(NEW, line(at(41), 2, "line 41"))
      assert.equals(NEW, line(at(42), 1, "line 42"))
      -- a stdout line older than stderr's newest, newer than stdout's: new
      assert.equals(NEW, line(at(41) + 1, 1, "late out"))
      assert.equals(NEW, line(at(43), 2, "line 43"))
      assert.equals(10ULL, C.cursor_repeated(c))
    end)

    it("tells a resume's replay from a repeat within the same connection", function()
      run(1, 20, 1, NEW)
      C.cursor_begin_replay(c)
      run(1, 20, 1, REPLAYED)
      run(15, 20, 1, REPEATED)
      run(21, 25, 1, NEW)
      run(18, 25, 1, REPEATED)
      assert.equals(14ULL, C.cursor_repeated(c))
      -- the next connection replays the same lines again: not repeats
      C.cursor_begin_replay(c)
      run(5, 25, 1, REPLAYED)
      run(26, 26, 1, NEW)
      assert.equals(14ULL, C.cursor_repeated(c))
    end)

    it("keeps a line the container wrote twice with one timestamp, as often as it did", function()
      C.cursor_begin_replay(c)
      -- Podman stamps whole seconds: one line twice in one second is two lines
      assert.equals(NEW, line(T, 1, "ping ok"))
      assert.equals(NEW, line(T, 1, "ping ok"))
      assert.equals(NEW, line(T, 1, "ping ok"))
      assert.equals(NEW, line(T + S, 1, "tick"))
      -- the daemon goes back: each copy is dropped once, no more exist
      assert.equals(REPEATED, line(T, 1, "ping ok"))
      assert.equals(REPEATED, line(T, 1, "ping ok"))
      assert.equals(REPEATED, line(T, 1, "ping ok"))
      assert.equals(REPEATED, line(T, 1, "ping ok")) -- older than "tick": a copy
      assert.equals(REPEATED, line(T + S, 1, "tick"))
      assert.equals(NEW, line(T + S, 1, "tick")) -- at the newest second: new
      assert.equals(NEW, line(T + 2 * S, 1, "ping ok"))
      -- equal pieces of one long line, stamped to the ns
      assert.equals(NEW, line(T + 2 * S + 7, 1, "aaaa", E.CURSOR_PIECE))
      assert.equals(NEW, line(T + 2 * S + 7, 1, "aaaa", E.CURSOR_PIECE))
      assert.equals(NEW, line(T + 2 * S + 7, 1, "aa", E.CURSOR_PIECE))
      assert.equals(5ULL, C.cursor_repeated(c))
      -- a reconnect replays them as often as they were delivered
      C.cursor_begin_replay(c)
      assert.equals(REPLAYED, line(T + 2 * S + 7, 1, "aaaa", E.CURSOR_PIECE))
      assert.equals(REPLAYED, line(T + 2 * S + 7, 1, "aaaa", E.CURSOR_PIECE))
      assert.equals(REPLAYED, line(T + 2 * S + 7, 1, "aa", E.CURSOR_PIECE))
      assert.equals(NEW, line(T + 2 * S + 7, 1, "aa", E.CURSOR_PIECE))
    end)

    it("keeps the same text written many times a millisecond", function()
      C.cursor_begin_replay(c)
      for i = 1, 1000 do assert.equals(NEW, line(T + 1000 + i * 50, 1, "same")) end
      assert.equals(0ULL, C.cursor_repeated(c))
    end)

    it("does not drop a line older than its stream's newest that was never delivered", function()
      C.cursor_begin_replay(c)
      run(1, 10, 1, NEW)
      -- out of order, or older than the window: not a copy of anything
      assert.equals(NEW, line(T + 1000 + 5 * MS + 1, 1, "reordered"))
      run(5, 10, 1, REPEATED)
      assert.equals(6ULL, C.cursor_repeated(c))
    end)

    it("resumes from a saved cursor without knowing each stream's newest line", function()
      run(1, 10, 1, NEW)
      run(11, 12, 2, NEW)
      local st = ffi.new("cursor_state_t")
      C.cursor_get_state(c, st)
      local keys = ffi.new("cursor_key_t[?]", st.n_keys)
      local n = C.cursor_keys(c, keys, st.n_keys)
      c = ffi.gc(C.cursor_restore(S, 0, st, keys, n), C.cursor_free)
      C.cursor_begin_replay(c)
      run(1, 10, 1, REPLAYED)
      run(11, 12, 2, REPLAYED)
      run(11, 11, 2, REPEATED)
      run(13, 14, 1, NEW)
      run(15, 15, 2, NEW)
    end)
  end)
end)
