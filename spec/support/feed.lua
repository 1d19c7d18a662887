--- feed.lua - runs a pipeline.lua through build/pipeline_feed for specs.
--
--   local feed = require("spec.support.feed")
--   local r = feed.run(source, feed.numbered(2, 3), { args = { "--lockstep" } })
--   r.code, r.out, r.err, r.records (decoded JSON lines), r.lines, r.stats,
--   r.filters[name] = { calls, errors, timeouts, dead_letters, disabled },
--   r.files[name] = contents of the files named in opts.read (under @DIR@)
--
-- In the source, args and files, @DIR@ is the run's temporary folder.
local proc = require("spec.support.proc")
local json = require("dkjson")

local M = {}

local TOOLS = os.getenv("ENGINE_TOOLS") or "build"
M.FEED = os.getenv("PIPELINE_FEED") or (TOOLS .. "/pipeline_feed")

function M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function tempdir()
  local ok, out = proc.sh("mktemp -d /tmp/feed_spec.XXXXXX")
  assert(ok, out)
  return (out:gsub("%s+$", ""))
end

--- Input text: batches is a list of batches, each a list of
-- { name, stream, time, text } (stream and time optional).
function M.input(batches)
  local out = {}
  for _, b in ipairs(batches) do
    for _, r in ipairs(b) do
      out[#out + 1] = table.concat({ r[1], r[2] or "stdout", r[3] or "2024-05-06T07:08:09.123456789Z",
        r[4] }, "\t")
    end
    out[#out + 1] = ""
  end
  return table.concat(out, "\n") .. "\n"
end

--- n batches of size lines for container name (default "web"): texts "b<batch>-l<line>".
function M.numbered(n, size, name)
  local batches = {}
  for b = 1, n do
    local batch = {}
    for l = 1, size do batch[l] = { name or "web", nil, nil, ("b%d-l%d"):format(b, l) } end
    batches[b] = batch
  end
  return batches
end

--- Decodes JSON lines; raises on a line that is not JSON.
function M.decode_lines(text)
  local recs = {}
  for line in (text or ""):gmatch("([^\n]*)\n") do
    local rec, _, err = json.decode(line)
    assert(type(rec) == "table", "not JSON: " .. line .. " (" .. tostring(err) .. ")")
    recs[#recs + 1] = rec
  end
  return recs
end

--- The `line` values of records, in order.
function M.lines_of(records)
  local out = {}
  for i, r in ipairs(records) do out[i] = r.line end
  return out
end

function M.run(source, batches, opts)
  opts = opts or {}
  local dir = tempdir()
  local function sub(s) return (s:gsub("@DIR@", dir)) end
  local path = dir .. "/pipeline.lua"
  M.write(path, sub(source))
  for name, text in pairs(opts.files or {}) do M.write(dir .. "/" .. name, sub(text)) end
  local input_path = dir .. "/input"
  M.write(input_path, type(batches) == "string" and batches or M.input(batches))
  local argv = { M.FEED }
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = sub(a) end
  argv[#argv + 1] = path
  argv[#argv + 1] = input_path
  local p = proc.spawn({ argv = argv, env = opts.env })
  local code = p:wait(120)
  local r = { code = code, out = p:stdout_text(), err = p:stderr_text(), path = path, dir = dir,
    files = {} }
  p:cleanup()
  for _, name in ipairs(opts.read or {}) do r.files[name] = M.read(dir .. "/" .. name) end
  os.execute("rm -rf " .. proc.quote(dir))
  assert(code, "pipeline_feed did not finish")
  r.lines = {}
  for line in r.out:gmatch("([^\n]*)\n") do r.lines[#r.lines + 1] = line end
  r.records = opts.plain and {} or M.decode_lines(r.out)
  local stats = r.err:match("stats ([^\n]*)")
  if stats then
    r.stats = {}
    for k, v in stats:gmatch("([%w_]+)=(%d+)") do r.stats[k] = tonumber(v) end
  end
  r.filters = {}
  for name, rest in r.err:gmatch("\nfilter (%S+) (calls=[^\n]*)") do
    local f = {}
    for k, v in rest:gmatch("([%w_]+)=(%d+)") do f[k] = tonumber(v) end
    r.filters[name] = f
  end
  return r
end

return M
