local E = require("spec.support.ffi")
local ffi = require("ffi")

if not pcall(ffi.typeof, "throttle_t") then
  ffi.cdef [[
typedef struct throttle { uint64_t win_start; size_t win_bytes; int busy; } throttle_t;
void throttle_init(throttle_t *t, uint64_t now_ms);
unsigned throttle_after(throttle_t *t, unsigned delay_ms, size_t bytes, uint64_t now_ms);
]]
end
local C = E.C

describe("the read throttle", function()
  it("rests a slow stream's socket for the delay after each small read", function()
    local t = ffi.new("throttle_t")
    C.throttle_init(t, 1000)
    -- one 100-byte line every 100 ms: slow
    for i = 1, 20 do
      assert.equal(500, C.throttle_after(t, 500, 100, 1000 + i * 100))
    end
  end)

  it("never rests without a delay, or after a read of 4 KiB or more", function()
    local t = ffi.new("throttle_t")
    C.throttle_init(t, 0)
    assert.equal(0, C.throttle_after(t, 0, 10, 5))
    assert.equal(0, C.throttle_after(t, 500, 4096, 10))
    assert.equal(500, C.throttle_after(t, 500, 4095, 20))
  end)

  it("reads a busy stream as data comes, judged by its rate once per delay", function()
    local t = ffi.new("throttle_t")
    C.throttle_init(t, 0)
    -- 1000-byte reads every 10 ms (100 KB/s, far over 4 KiB per 500 ms):
    -- small reads, but once the first window ends the stream is busy
    local now, rested = 0, 0
    for _ = 1, 49 do
      now = now + 10
      if C.throttle_after(t, 500, 1000, now) > 0 then rested = rested + 1 end
    end
    assert.equal(49, rested) -- the first window: not yet judged
    now = now + 10
    assert.equal(0, C.throttle_after(t, 500, 1000, now)) -- window ended: busy
    for _ = 1, 100 do
      now = now + 10
      assert.equal(0, C.throttle_after(t, 500, 1000, now))
    end
    -- the stream slows down: one 100-byte read per 600 ms; the next window
    -- judges it slow again
    now = now + 600
    C.throttle_after(t, 500, 100, now)
    now = now + 600
    assert.equal(500, C.throttle_after(t, 500, 100, now))
  end)
end)
