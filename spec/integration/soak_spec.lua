-- The soak, short form: 100 containers on the fake API server, every stream
-- cycled every 50 ms, for 10 s. The live-reader count stays at the number of
-- containers, descriptors and memory do not grow, every line arrives once,
-- and after stop no reader is left. scripts/soak.sh runs the long form.
-- (Not run on the sanitizer builds: AddressSanitizer's quarantine grows RSS
-- by design; the lifecycle and fault specs cover those builds.)
local soak = require "spec.support.soak"

describe("a soak of 100 containers cycling every 50 ms", function()
  it("keeps every reader tracked and leaks nothing", function()
    local r = soak.run { containers = 100, rate = 10, cycle = 0.05, seconds = 10 }
    print(soak.format(r))
    assert.equal(0, r.exit_code)
    assert.is_true(#r.live >= 8, "too few stats lines: " .. #r.live)
    for i, live in ipairs(r.live) do assert.equal(100, live, "stats line " .. i) end
    assert.equal(0, r.live_after_stop)
    assert.matches("readers live 0, started 100, stopped 100", r.final, 1, true)
    assert.is_true(r.cycled >= 100 * 10 / 0.05 / 4, "only " .. tostring(r.cycled) .. " cycles")
    assert.is_true(r.fds_end <= r.fds_start + 2, "descriptors grew")
    assert.is_true(r.rss_end_kb <= r.rss_start_kb + 4096, "RSS grew by more than 4 MiB")
    assert.equal(0, r.duplicates)
    assert.equal(0, r.gaps)
    assert.is_true(r.lines >= 100 * 10 * 8)
  end)
end)
