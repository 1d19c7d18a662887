-- Parses JSON application logs: a line that is a JSON object becomes fields
-- of its record (under `app`), with its "msg"/"message" as the line and its
-- level lifted to `level`. Other lines pass unchanged.
local json = require("engine.json")

return {
  filters = {
    { name = "parse_json", process = function(batch)
        for _, rec in ipairs(batch) do
          if rec.line:sub(1, 1) == "{" then
            local doc = json.decode(rec.line)
            if type(doc) == "table" then
              rec.app = doc
              rec.level = type(doc.level) == "string" and doc.level or nil
              local msg = doc.msg or doc.message
              if type(msg) == "string" then rec.line = msg end
            end
          end
        end
      end },
  },
  outputs = { { type = "stdout", format = "json" } },
}
