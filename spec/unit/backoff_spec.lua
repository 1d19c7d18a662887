local E = require("spec.support.ffi")
local ffi = require("ffi")

if not pcall(ffi.typeof, "backoff_t") then
  ffi.cdef [[
typedef struct backoff { double initial, max; double step; } backoff_t;
void backoff_init(backoff_t *b, double initial, double max);
void backoff_reset(backoff_t *b);
double backoff_next(backoff_t *b);
]]
end
local C = E.C

describe("backoff", function()
  it("doubles its step up to max, each delay jittered within [step/2, step]", function()
    local b = ffi.new("backoff_t")
    C.backoff_init(b, 0.5, 4)
    local steps = { 0.5, 1, 2, 4, 4, 4 }
    for _, step in ipairs(steps) do
      local d = C.backoff_next(b)
      assert.is_true(d >= step / 2 and d <= step, string.format("delay %g for step %g", d, step))
    end
  end)

  it("jitters: delays of one step are not all equal", function()
    local seen = {}
    local n = 0
    for _ = 1, 50 do
      local b = ffi.new("backoff_t")
      C.backoff_init(b, 1, 1)
      local d = C.backoff_next(b)
      if not seen[d] then n = n + 1 end
      seen[d] = true
    end
    assert.is_true(n > 10, n .. " distinct delays of 50")
  end)

  it("goes back to its initial step on reset", function()
    local b = ffi.new("backoff_t")
    C.backoff_init(b, 0.1, 30)
    for _ = 1, 10 do C.backoff_next(b) end
    assert.equal(30, b.step)
    C.backoff_reset(b)
    local d = C.backoff_next(b)
    assert.is_true(d >= 0.05 and d <= 0.1)
  end)

  it("takes a max below initial as initial", function()
    local b = ffi.new("backoff_t")
    C.backoff_init(b, 2, 1)
    assert.equal(2, b.max)
    for _ = 1, 3 do
      local d = C.backoff_next(b)
      assert.is_true(d >= 1 and d <= 2)
    end
  end)
end)
