-- Joins Java and Python stack traces into one record each. Every log event
-- of these apps starts with a date ("2024-05-06 07:08:09 ..."); any other
-- line (an "at ..." frame, "Caused by:", a Python "File ..." line or the
-- final "ValueError: ...") continues the event before it. A trace still
-- open when its container goes quiet is flushed after 1 to 2 seconds.
local multiline = require("engine.multiline")

return {
  filters = {
    multiline.new({ name = "traces", start = "^%d%d%d%d%-%d%d%-%d%d[ T]", flush_after = 1 }),
  },
  outputs = { { type = "stdout", format = "json" } },
}
