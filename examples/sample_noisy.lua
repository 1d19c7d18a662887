-- Tames a noisy container: keeps 1 line in 10 from containers named
-- "chatty*", and lets at most 100 lines per second through from any
-- container (a "rate limit: dropped N lines" record says what was cut).
local sample = require("engine.sample")

return {
  filters = {
    sample.one_in(10, { name = "chatty", select = { include = { name = "chatty*" } } }),
    sample.rate_limit({ name = "limit", lines = 100, every = 1 }),
  },
  outputs = { { type = "stdout", format = "json" } },
}
