-- The soak, short form: 100 containers on the fake API server, every stream
-- cycled every 50 ms, for 10 s and on until 1,000 cycles and 50 lines of
-- every container have arrived (2 minutes at most: a limit, not a measure).
-- The live-reader count stays at the number of containers, descriptors and
-- memory do not grow, every line arrives once, and after stop no reader is
-- left. scripts/bench/soak.sh runs the long form.
-- On the AddressSanitizer engine the quarantine grows RSS by design, so the
-- RSS bound holds for the plain engine only; the rest holds there too, and
-- the leak check runs at exit. Descriptors are those the engine holds for
-- seconds (see spec/support/soak.lua), not the sockets of the streams that
-- happen to be reconnecting when a sample is taken.
local soak = require "spec.support.soak"

describe("a soak of 100 containers cycling every 50 ms #sanitize", function()
  it("keeps every reader tracked and leaks nothing", function()
    local r = soak.run { containers = 100, rate = 10, cycle = 0.05, seconds = 10,
                         want = { cycles = 1000, lines = 50, stats = 5 }, timeout = 120 }
    print(soak.format(r))
    assert.equal(0, r.exit_code)
    assert.is_true(r.wanted, "1000 cycles, 50 lines of each container and 5 stats lines did not " ..
                   "arrive within 120 s")
    for i, live in ipairs(r.live) do assert.equal(100, live, "stats line " .. i) end
    assert.equal(0, r.live_after_stop)
    assert.matches("readers live 0, started 100, stopped 100", r.final, 1, true)
    assert.is_true(r.cycled >= 1000, "only " .. tostring(r.cycled) .. " cycles")
    assert.is_true(r.fds_end <= r.fds_start + 2, "descriptors grew")
    if not os.getenv("ENGINE_SANITIZER") then
      assert.is_true(r.rss_end_kb <= r.rss_start_kb + 4096, "RSS grew by more than 4 MiB")
    end
    assert.equal(0, r.duplicates)
    assert.equal(0, r.gaps)
    assert.is_true(r.fewest >= 50, "a container delivered only " .. tostring(r.fewest) .. " lines")
  end)
end)
