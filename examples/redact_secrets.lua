-- Masks bearer tokens, passwords in URLs and key=value secrets, emails and
-- card numbers in every line before it leaves the host. If the filter
-- fails, its batch is dropped: an unmasked secret must never get out.
local redact = require("engine.redact")

return {
  filters = {
    redact.filter({ name = "redact", on_error = "drop" }),
  },
  outputs = { { type = "stdout", format = "json" } },
}
