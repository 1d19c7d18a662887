-- engine.pipeline: checks the table a pipeline.lua returns and puts it in a
-- normal form for the C side (pipeline.c), which copies the values without
-- checking them again.
--
-- validate(tbl, path) returns a new table:
--   docker  = { read_delay = seconds|nil, attach = boolean|nil,
--               list = boolean,   -- docker was given as a list of daemons
--               daemons = { { name = string, host = string|nil,
--                             tls = { ca = path|nil, cert = path|nil, key = path|nil }|nil }, .. } }
--   select  = { include = { name = {..}, id = {..}, label = {..}, image = {..} },
--               exclude = { same } }            -- every list present, maybe empty
--   history = "all" | "start" | nil
--   batch   = { max_lines, max_bytes, flush_interval }   -- each maybe nil
--   dead_letter = { path = string } | nil
--   filters = { { name = string, on_error = "pass"|"drop"|"dead_letter",
--                 process = function|nil, init = function|nil, shutdown = function|nil,
--                 timers = { { every = number, handler = function }, .. },
--                 select = <as select above>|nil,
--                 dead_letter = string|nil  -- the path, when on_error is "dead_letter"
--               }, .. }
--   outputs = { { type = "stdout"|"file", name = string, format = "json"|"plain",
--                 routed_only = boolean,
--                 path = string, max_bytes = number|nil, keep = number }, .. }  -- path.. : file
--   engine  = { cycle, stop_timeout, ..., log_level, lua_memory,
--               metrics = { listen = "host:port", max_containers = n|nil } }  -- each maybe nil
-- Settings left out stay nil: their defaults live in C (config.c, pipeline.c).
-- Mistakes raise one error (level 0) listing every mistake found, up to
-- MAX_ERRORS, one a line, each "path:line: setting what is wrong" (the line
-- of the setting in the file's text when it is written out there, see
-- engine.locate; else "path: ...").

local locate = require("engine.locate")

local M = {}

local MAX_ERRORS = 20

local format, type, pairs, ipairs = string.format, type, pairs, ipairs
local floor, huge = math.floor, math.huge

local SIZE_MAX = 2147483647

local function show(v)
  if type(v) == "string" then
    if #v > 40 then v = v:sub(1, 37) .. "..." end
    return format("%q", v)
  elseif type(v) == "number" or type(v) == "boolean" then
    return tostring(v)
  end
  return "a " .. type(v)
end

local function sorted_keys(set)
  local keys = {}
  for k in pairs(set) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  return table.concat(keys, ", ")
end

-- A checker: carries the file name and text for messages, and the
-- mistakes found so far.
local Check = {}
Check.__index = Check

-- Raised when MAX_ERRORS mistakes were noted: stops the checks.
local FULL = {}

-- "path:line: where msg" (the line of where, when found in the text).
function Check:message(where, msg, at)
  if where and where ~= "" then msg = where .. " " .. msg end
  local line = locate.line(self.source, at or where)
  return self.path .. (line and ":" .. line or "") .. ": " .. msg
end

-- Notes a mistake and goes on (ends the checks after MAX_ERRORS).
function Check:note(message)
  self.errors[#self.errors + 1] = message
  if #self.errors >= MAX_ERRORS then error(FULL, 0) end
end

-- A mistake that ends the check of the current part (see try).
function Check:fail(where, fmt, ...)
  error(self:message(where, format(fmt, ...)), 0)
end

-- Runs self:method(...): returns its results, or nil after noting the
-- mistake it raised.
function Check:try(method, ...)
  local res = { pcall(self[method], self, ...) }
  if res[1] then return unpack(res, 2, table.maxn(res)) end
  if res[2] == FULL then error(FULL, 0) end
  self:note(tostring(res[2]))
  return nil
end

local function join(where, key)
  if type(key) == "number" then return format("%s[%d]", where, key) end
  if where == "" then return key end
  return where .. "." .. key
end

-- Notes every key of tbl that known does not list (other_key(k), when
-- given, may explain one instead: it returns a message or nil).
function Check:keys(tbl, known, where, other_key)
  local bad = {}
  for k in pairs(tbl) do
    if type(k) ~= "string" or not known[k] then bad[#bad + 1] = k end
  end
  table.sort(bad, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(bad) do
    local name = type(k) == "string" and format("%q", k) or show(k)
    local at = type(k) == "string" and join(where, k) or where
    local why = other_key and type(k) == "string" and other_key(k)
    if why then
      self:note(self:message(join(where, k), why, at))
    elseif where == "" then
      self:note(self:message(nil, format("unknown key %s (expected one of: %s)", name, sorted_keys(known)), at))
    else
      self:note(self:message(nil, format("unknown key %s in %s (expected one of: %s)", name, where,
                                         sorted_keys(known)), at))
    end
  end
end

function Check:table(v, where)
  if type(v) ~= "table" then self:fail(where, "must be a table (got %s)", show(v)) end
  return v
end

-- Fails unless v is a table whose keys are exactly 1..n; returns n.
function Check:list(v, where, what)
  self:table(v, where)
  local n = 0
  for k in pairs(v) do
    if type(k) ~= "number" or k < 1 or floor(k) ~= k then
      self:fail(where, "must be a list of %s (found the key %s)", what, show(k))
    end
    n = n + 1
  end
  for i = 1, n do
    if v[i] == nil then self:fail(where, "must be a list of %s (no item %d)", what, i) end
  end
  return n
end

-- A string or a list of non-empty strings; returns a new list.
function Check:strings(v, where)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then
    self:fail(where, "must be a string or a list of strings (got %s)", show(v))
  end
  local n = self:list(v, where, "strings")
  local out = {}
  for i = 1, n do
    local s = v[i]
    if type(s) ~= "string" or s == "" then
      self:fail(join(where, i), "must be a non-empty string (got %s)", show(s))
    end
    out[i] = s
  end
  return out
end

function Check:number(v, where)
  if type(v) ~= "number" then self:fail(where, "must be a number (got %s)", show(v)) end
  if v ~= v or v == huge or v == -huge then
    self:fail(where, "must be a finite number (got %s)", show(v))
  end
  return v
end

function Check:positive(v, where)
  self:number(v, where)
  if v <= 0 then self:fail(where, "must be a positive number (got %s)", show(v)) end
  return v
end

function Check:nonnegative(v, where)
  self:number(v, where)
  if v < 0 then self:fail(where, "must be 0 or a positive number (got %s)", show(v)) end
  return v
end

function Check:size(v, where)
  self:number(v, where)
  if v < 1 or v > SIZE_MAX or floor(v) ~= v then
    self:fail(where, "must be an integer from 1 to %d (got %s)", SIZE_MAX, show(v))
  end
  return v
end

-- A whole number of `what` from lo to hi.
function Check:whole(v, where, what, lo, hi)
  self:number(v, where)
  if v < lo or v > hi or floor(v) ~= v then
    self:fail(where, "must be a whole number of %s from %d to %d (got %s)", what, lo, hi, show(v))
  end
  return v
end

function Check:choice(v, where, choices)
  for _, c in ipairs(choices) do
    if v == c then return v end
  end
  local quoted = {}
  for i, c in ipairs(choices) do quoted[i] = format("%q", c) end
  local list
  if #quoted == 1 then
    list = quoted[1]
  elseif #quoted == 2 then
    list = quoted[1] .. " or " .. quoted[2]
  else
    list = "one of " .. table.concat(quoted, ", ")
  end
  self:fail(where, "must be %s (got %s)", list, show(v))
end

function Check:nonempty_string(v, where)
  if type(v) ~= "string" or v == "" then
    self:fail(where, "must be a non-empty string (got %s)", show(v))
  end
  return v
end

-- docker = { host = "unix:///...", read_delay = seconds, attach = boolean,
--            tls = { ca = path, cert = path, key = path }, name = string }
-- or, for several daemons, a list of { host =, tls =, name = } entries, with
-- the engine-wide read_delay and attach beside them:
-- docker = { read_delay = 0.2, { name = "a", host = ... }, { host = ... } }
-- Normal form: { read_delay, attach, list = boolean,
--                daemons = { { name, host|nil, tls|nil }, .. } }
local DAEMON_KEYS = { host = true, tls = true, name = true }
local DAEMONS_MAX = 16

-- The name a daemon gets when its entry has none: the socket file's name
-- without ".sock" (unix://), the host and port (tcp, http, https), "local"
-- without a host ($DOCKER_HOST or the default socket).
local function default_name(host)
  if host == nil then return "local" end
  local scheme, rest = host:match("^(%a[%w+.-]*)://(.*)$")
  if scheme == "unix" then
    local base = rest:match("([^/]+)$") or ""
    base = base:gsub("%.sock$", "")
    return base ~= "" and base or "local"
  end
  return (rest or host):match("^[^/]+") or host
end
M.docker_default_name = default_name

-- One daemon's host, tls and name (where: "docker" or "docker[i]").
function Check:daemon(v, where)
  local out = {}
  if v.host ~= nil then out.host = self:docker_host(v.host, join(where, "host")) end
  if v.tls ~= nil then
    local w = join(where, "tls")
    self:table(v.tls, w)
    self:keys(v.tls, { ca = true, cert = true, key = true }, w)
    out.tls = {}
    for _, k in ipairs { "ca", "cert", "key" } do
      if v.tls[k] ~= nil then out.tls[k] = self:nonempty_string(v.tls[k], join(w, k)) end
    end
    if (out.tls.cert == nil) ~= (out.tls.key == nil) then
      self:fail(w, "cert and key go together (a client certificate and its key)")
    end
  end
  if v.name ~= nil then
    local w = join(where, "name")
    self:nonempty_string(v.name, w)
    if #v.name > 63 or not v.name:match("^[%w_.:-]+$") then
      self:fail(w, "must be at most 63 letters, digits and _ . : - (got %s)", show(v.name))
    end
    out.name = v.name
  else
    out.name = default_name(out.host)
    out.derived = true
  end
  return out
end

function Check:docker(v)
  if v == nil then return { daemons = { { name = default_name(nil) } }, list = false } end
  self:table(v, "docker")
  local n = #v
  local out = { daemons = {}, list = n > 0 }
  if n > 0 then
    local named = {}
    for k, x in pairs(v) do
      if type(k) ~= "number" then named[k] = x end
    end
    self:keys(named, { read_delay = true, attach = true }, "docker", function(k)
      if DAEMON_KEYS[k] then
        return "goes in each daemon's entry when docker is a list of daemons" ..
          " (read_delay and attach stay beside the list)"
      end
    end)
    if n > DAEMONS_MAX then self:fail("docker", "lists %d daemons (at most %d)", n, DAEMONS_MAX) end
    local seen = {}
    for i = 1, n do
      local where = join("docker", i)
      local e = v[i]
      if type(e) ~= "table" then
        self:note(self:message(where, format("must be a table { host = ..., tls = ..., name = ... } (got %s)", show(e))))
      else
        self:keys(e, DAEMON_KEYS, where, function(k)
          if k == "read_delay" or k == "attach" then
            return "is engine-wide: set docker." .. k .. " beside the list, not in an entry"
          end
        end)
        local d = self:try("daemon", e, where)
        if d then
          local first = seen[d.name]
          if first then
            self:note(self:message(join(where, d.derived and "host" or "name"),
              format("names the daemon %q (%s), as docker[%d] does: each daemon needs its own name%s",
                d.name, d.derived and "derived from its host" or "given", first,
                d.derived and " (set name = \"...\")" or ""),
              d.derived and (e.host ~= nil and join(where, "host") or where) or join(where, "name")))
          else
            seen[d.name] = i
          end
          d.derived = nil
          out.daemons[#out.daemons + 1] = d
        end
      end
    end
    for k in pairs(v) do
      if type(k) == "number" and (k < 1 or k > n or floor(k) ~= k) then
        self:fail("docker", "must be a list of daemons with no gaps (found the key %s)", show(k))
      end
    end
  else
    self:keys(v, { host = true, read_delay = true, attach = true, tls = true, name = true }, "docker")
    local d = self:daemon(v, "docker")
    d.derived = nil
    out.daemons[1] = d
  end
  if v.read_delay ~= nil then
    out.read_delay = self:nonnegative(v.read_delay, "docker.read_delay")
    if out.read_delay > 10 then self:fail("docker.read_delay", "must be at most 10 seconds") end
  end
  if v.attach ~= nil then
    if type(v.attach) ~= "boolean" then self:fail("docker.attach", "must be true or false") end
    out.attach = v.attach
  end
  return out
end

-- An address the engine can reach a Docker daemon at (http.c).
function Check:docker_host(v, where)
  self:nonempty_string(v, where)
  local scheme, rest = v:match("^(%a[%w+.-]*)://(.*)$")
  if scheme == "unix" then
    if rest == "" then self:fail(where, "has no socket path (got %s)", show(v)) end
  elseif scheme == "tcp" or scheme == "http" or scheme == "https" then
    if not rest:match("^[^/]") then self:fail(where, "has no host (got %s)", show(v)) end
  else
    self:fail(where, "must be unix:///path, tcp://host:port or http(s)://host:port (got %s%s)", show(v),
      scheme == "ssh" and "; ssh:// is not supported: forward the socket, e.g. ssh -L" ..
      " /tmp/docker.sock:/var/run/docker.sock, and use unix:///tmp/docker.sock" or "")
  end
  return v
end

-- With `engine check` (opts.writable): the engine must be able to create
-- or write the file (or, with is_dir, the folder) at path.
function Check:writable(path, where, is_dir)
  if self.can_write then
    local why = self.can_write(path, is_dir)
    if why then self:fail(where, "%s", why) end
  end
  return path
end

-- The environment variable named by v must be set (where names the setting).
function Check:env(v, where)
  self:nonempty_string(v, where)
  if os.getenv(v) == nil then
    self:fail(where, "names the environment variable %s, which is not set", v)
  end
  return v
end

local SELECT_KINDS = { name = true, id = true, label = true, image = true }

function Check:rules(v, where)
  local out = { name = {}, id = {}, label = {}, image = {} }
  if v == nil then return out end
  self:table(v, where)
  self:keys(v, SELECT_KINDS, where)
  for kind in pairs(SELECT_KINDS) do
    if v[kind] ~= nil then out[kind] = self:strings(v[kind], join(where, kind)) end
  end
  for i, l in ipairs(out.label) do
    if l:sub(1, 1) == "=" then
      self:fail(join(join(where, "label"), i),
        "must be \"key\" or \"key=value\" with a non-empty key (got %s)", show(l))
    end
  end
  return out
end

function Check:select(v, where)
  where = where or "select"
  if v == nil then v = {} end
  self:table(v, where)
  self:keys(v, { include = true, exclude = true }, where)
  return {
    include = self:rules(v.include, where .. ".include"),
    exclude = self:rules(v.exclude, where .. ".exclude"),
  }
end

local BATCH_KEYS = { max_lines = true, max_bytes = true, flush_interval = true }

function Check:batch(v)
  if v == nil then return {} end
  self:table(v, "batch")
  self:keys(v, BATCH_KEYS, "batch")
  local out = {}
  if v.max_lines ~= nil then out.max_lines = self:size(v.max_lines, "batch.max_lines") end
  if v.max_bytes ~= nil then out.max_bytes = self:size(v.max_bytes, "batch.max_bytes") end
  if v.flush_interval ~= nil then
    out.flush_interval = self:positive(v.flush_interval, "batch.flush_interval")
  end
  return out
end

local FILTER_KEYS = {
  name = true, on_error = true, process = true, init = true, shutdown = true,
  timers = true, select = true, dead_letter = true,
}

-- dead_letter = { path = "..." }: returns the path.
function Check:dead_letter(v, where)
  self:table(v, where)
  self:keys(v, { path = true }, where)
  return self:writable(self:nonempty_string(v.path, where .. ".path"), where .. ".path")
end

function Check:optional_function(v, where, signature)
  if v ~= nil and type(v) ~= "function" then
    self:fail(where, "must be a %s (got %s)", signature, show(v))
  end
  return v
end

function Check:timers(v, where)
  local n = self:list(v, where, "timers")
  local out = {}
  for i = 1, n do
    local t, w = v[i], join(where, i)
    self:table(t, w)
    self:keys(t, { every = true, handler = true }, w)
    if type(t.handler) ~= "function" then
      self:fail(w .. ".handler", "must be a function(ctx) (got %s)", show(t.handler))
    end
    out[i] = { every = self:positive(t.every, w .. ".every"), handler = t.handler }
  end
  return out
end

-- One filter table (not a bare function) into its normal form.
function Check:filter_table(f, where, i, dead_letter)
  self:keys(f, FILTER_KEYS, where)
  self:optional_function(f.process, where .. ".process", "function(batch, ctx)")
  self:optional_function(f.init, where .. ".init", "function(ctx)")
  self:optional_function(f.shutdown, where .. ".shutdown", "function(ctx)")
  local entry = {
    name = "filter" .. i, on_error = "pass", process = f.process, init = f.init,
    shutdown = f.shutdown, timers = {},
  }
  if f.timers ~= nil then entry.timers = self:timers(f.timers, where .. ".timers") end
  if f.process == nil and #entry.timers == 0 then
    self:fail(where .. ".process", "must be a function(batch, ctx) (got a nil; a filter needs "
      .. "a process function or timers)")
  end
  if f.name ~= nil then entry.name = self:nonempty_string(f.name, where .. ".name") end
  if f.on_error ~= nil then
    entry.on_error = self:choice(f.on_error, where .. ".on_error", { "pass", "drop", "dead_letter" })
  end
  if f.select ~= nil then entry.select = self:select(f.select, where .. ".select") end
  if f.dead_letter ~= nil then
    entry.dead_letter = self:dead_letter(f.dead_letter, where .. ".dead_letter")
  end
  if entry.on_error == "dead_letter" then
    entry.dead_letter = entry.dead_letter or dead_letter
    if entry.dead_letter == nil then
      self:fail(where .. ".on_error", "is \"dead_letter\" but there is no dead_letter = { path = ... }"
        .. " in the filter or at the top level")
    end
  else
    entry.dead_letter = nil
  end
  return entry
end

function Check:filters(v, dead_letter)
  if v == nil then return {} end
  local n = self:list(v, "filters", "filters")
  local out, seen = {}, {}
  for i = 1, n do
    out[i] = self:try("filter", v[i], join("filters", i), i, dead_letter, seen)
  end
  return out
end

function Check:filter(f, where, i, dead_letter, seen)
  local entry
  if type(f) == "function" then
    entry = { name = "filter" .. i, on_error = "pass", process = f, timers = {} }
  elseif type(f) == "table" then
    entry = self:filter_table(f, where, i, dead_letter)
  else
    self:fail(where, "must be a function or a table with a process function (got %s)", show(f))
  end
  if seen[entry.name] then
    self:fail(where .. ".name", "%q is already the name of filters[%d]", entry.name, seen[entry.name])
  end
  seen[entry.name] = i
  return entry
end

-- The keys each type of output takes.
local OUTPUT_TYPES = { "stdout", "file", "null", "http", "clickhouse", "loki", "elasticsearch", "otlp",
                       "syslog", "mqtt", "nats" }
local NETWORK = { http = true, clickhouse = true, loki = true, elasticsearch = true, otlp = true,
                  syslog = true }
local OUTPUT_KEYS = {}
do
  local function set(...)
    local out = {}
    for _, list in ipairs { ... } do
      for _, k in ipairs(list) do out[k] = true end
    end
    return out
  end
  local common = { "type", "name", "routed_only" }
  local delivery = { "url", "retry_max", "backoff_initial", "backoff_max", "dead_letter", "mode" }
  local http = { "headers", "auth", "ca_file", "tls_verify", "timeout", "gzip", "compression",
                 "concurrency" }
  OUTPUT_KEYS.stdout = set(common, { "format" })
  OUTPUT_KEYS.null = set(common, { "format" })
  OUTPUT_KEYS.file = set(common, { "format", "path", "max_bytes", "keep", "mode" })
  local merge = { "batch_max_bytes", "batch_max_records", "batch_timeout" }
  OUTPUT_KEYS.http = set(common, delivery, http, merge, { "format", "record_id" })
  OUTPUT_KEYS.clickhouse = set(common, delivery, http, merge, { "table" })
  OUTPUT_KEYS.loki = set(common, delivery, http, { "labels", "tenant", "line_format" })
  OUTPUT_KEYS.elasticsearch = set(common, delivery, http, merge, { "index" })
  OUTPUT_KEYS.otlp = set(common, delivery, http, { "encoding" })
  OUTPUT_KEYS.syslog = set(common, delivery, { "facility", "hostname", "max_message" })
  OUTPUT_KEYS.mqtt = set(common, merge, { "retry_max", "backoff_initial", "backoff_max", "dead_letter", "mode",
                                          "host", "port", "topic", "client_id", "keepalive", "username",
                                          "password_env", "password_file", "tls_ca_file", "max_inflight",
                                          "record_id" })
  OUTPUT_KEYS.nats = set(common, delivery, { "subject", "stream", "timeout", "concurrency", "user",
                                            "password_env", "password_file", "token_env", "token_file",
                                            "creds_file", "tls_ca_file" })
end

-- Why key, which some other type of output takes, is not for type; nil
-- when no type takes it.
local function not_for(key, type_)
  local takers = {}
  for _, t in ipairs(OUTPUT_TYPES) do
    if OUTPUT_KEYS[t][key] then takers[#takers + 1] = format("%q", t) end
  end
  if #takers == 0 then return nil end
  if type_ == "syslog" and OUTPUT_KEYS.http[key] then return "is not for syslog outputs" end
  if type_ == "nats" and OUTPUT_KEYS.http[key] then return "is not for nats outputs" end
  if #takers == 1 then return "is only for outputs of type " .. takers[1] end
  return format("is not for outputs of type %q (only for %s)", type_, table.concat(takers, ", "))
end

-- The settings of a network output (engine/output_http.c, output_syslog.c), into entry.
function Check:network_output(o, where, entry)
  local url = self:nonempty_string(o.url, where .. ".url")
  -- credentials in a URL (scheme://user:password@host) are never shown
  local bare = url:gsub("^(%a[%w+.-]*://)[^/?#]*@", "%1***@")
  if bare == url then bare = url:gsub("^[^/?#]*@", "***@") end
  local shown = show(bare)
  if entry.type == "syslog" then
    local port = tonumber(url:match("^tcp://.+:(%d+)$") or url:match("^udp://.+:(%d+)$"))
    if not port or port < 1 or port > 65535 or url:find("@", 1, true) then
      self:fail(where .. ".url", "must be tcp://host:port or udp://host:port (got %s)", shown)
    end
    if o.facility ~= nil then
      self:number(o.facility, where .. ".facility")
      if o.facility < 0 or o.facility > 23 or floor(o.facility) ~= o.facility then
        self:fail(where .. ".facility", "must be a syslog facility from 0 to 23 (got %s)", show(o.facility))
      end
      entry.facility = o.facility
    end
    if o.hostname ~= nil then entry.hostname = self:nonempty_string(o.hostname, where .. ".hostname") end
    if o.max_message ~= nil then
      entry.max_message = self:whole(o.max_message, where .. ".max_message", "bytes", 480, 65000)
    end
  elseif not url:match("^https?://[^/]+") then
    self:fail(where .. ".url", "must be an http:// or https:// address (got %s)", shown)
  end
  entry.url = url
  entry.format = o.format == nil and "ndjson" or self:choice(o.format, where .. ".format", { "ndjson", "json" })
  if entry.type == "otlp" then
    entry.encoding = o.encoding == nil and "protobuf"
      or self:choice(o.encoding, where .. ".encoding", { "protobuf", "json" })
  end
  if o.headers ~= nil then
    self:table(o.headers, where .. ".headers")
    local list = {}
    for k, v in pairs(o.headers) do
      -- a header's value may be a secret: a message names its header, never shows the value
      if type(k) ~= "string" or not k:match("^[%w%-]+$") then
        self:fail(where .. ".headers", "must map header names (letters, digits, -) to one-line strings (got the name %s)", show(k))
      elseif type(v) ~= "string" then
        self:fail(where .. ".headers." .. k, "must be a one-line string (got a %s)", type(v))
      elseif v:find("[\r\n%z]") then
        self:fail(where .. ".headers." .. k, "holds a line break (CR or LF) or NUL: a header value must be one line (the value is not shown)")
      end
      list[#list + 1] = k .. ": " .. v
    end
    table.sort(list)
    entry.headers = list
  end
  if o.auth ~= nil then
    local w = where .. ".auth"
    self:table(o.auth, w)
    self:keys(o.auth, { user_env = true, password_env = true, bearer_env = true }, w)
    if o.auth.bearer_env ~= nil then
      entry.bearer_env = self:env(o.auth.bearer_env, w .. ".bearer_env")
    end
    if o.auth.user_env ~= nil then
      entry.user_env = self:env(o.auth.user_env, w .. ".user_env")
      entry.password_env = self:env(o.auth.password_env, w .. ".password_env")
    end
    if not entry.bearer_env and not entry.user_env then
      self:fail(w, "must name bearer_env, or user_env and password_env (environment variables)")
    end
  end
  if o.ca_file ~= nil then entry.ca_file = self:nonempty_string(o.ca_file, where .. ".ca_file") end
  if o.tls_verify ~= nil then
    if type(o.tls_verify) ~= "boolean" then self:fail(where .. ".tls_verify", "must be true or false") end
    entry.tls_verify = o.tls_verify
  end
  if o.record_id ~= nil then
    if type(o.record_id) ~= "boolean" then self:fail(where .. ".record_id", "must be true or false") end
    entry.record_id = o.record_id
  end
  self:compression(o, where, entry)
  self:retrying(o, where, entry, true)
  if o.concurrency ~= nil then
    entry.concurrency = self:whole(o.concurrency, where .. ".concurrency", "requests", 1, 64)
  end
  self:merging(o, where, entry)
  if entry.compression then
    for _, k in ipairs { "batch_max_bytes", "batch_max_records", "batch_timeout" } do
      if entry[k] and entry[k] > 0 then
        self:fail(where .. "." .. k, "merges bodies, which compression = %q rules out (a compressed body "
                  .. "is one stream, sent alone): leave out one of them", entry.compression)
      end
    end
  end
  if o.dead_letter ~= nil then
    entry.dead_letter = self:writable(self:nonempty_string(o.dead_letter, where .. ".dead_letter"),
                                      where .. ".dead_letter")
  end
  if o.table ~= nil then
    entry.table = self:nonempty_string(o.table, where .. ".table")
    if not entry.table:match("^[%w_]+%.?[%w_]*$") then
      self:fail(where .. ".table", "must be a table name like logs or db.logs (got %s)", show(entry.table))
    end
  end
  if entry.type == "loki" then self:loki_output(o, where, entry) end
  if o.index ~= nil then entry.index = self:nonempty_string(o.index, where .. ".index") end
end

-- How a network output waits and retries: timeout (seconds, with_timeout),
-- backoff_initial, backoff_max (seconds) and retry_max (retries), into entry.
function Check:retrying(o, where, entry, with_timeout)
  for _, k in ipairs { "timeout", "backoff_initial", "backoff_max" } do
    if o[k] ~= nil and (with_timeout or k ~= "timeout") then
      entry[k] = self:positive(o[k], where .. "." .. k)
    end
  end
  if o.retry_max ~= nil then
    self:number(o.retry_max, where .. ".retry_max")
    if o.retry_max < 0 or floor(o.retry_max) ~= o.retry_max then
      self:fail(where .. ".retry_max", "must be a whole number of retries (got %s)", show(o.retry_max))
    end
    entry.retry_max = o.retry_max
  end
end

-- Merging queued batches into one request: batch_max_bytes and
-- batch_max_records (0: no limit), batch_timeout (seconds a partly filled
-- request may wait for more).
function Check:merging(o, where, entry)
  for _, k in ipairs { "batch_max_bytes", "batch_max_records" } do
    if o[k] ~= nil then
      self:number(o[k], where .. "." .. k)
      if o[k] < 0 or floor(o[k]) ~= o[k] then
        self:fail(where .. "." .. k, "must be a whole number, 0 (no limit) or more (got %s)", show(o[k]))
      end
      entry[k] = o[k]
    end
  end
  if o.batch_timeout ~= nil then
    self:number(o.batch_timeout, where .. ".batch_timeout")
    if o.batch_timeout < 0 or o.batch_timeout > 60 then
      self:fail(where .. ".batch_timeout", "must be seconds from 0 to 60 (got %s)", show(o.batch_timeout))
    end
    entry.batch_timeout = o.batch_timeout
  end
end

-- Where a destination cannot decode zstd request bodies.
local NO_ZSTD = {
  loki = "Loki's push API decodes gzip request bodies, not zstd",
  elasticsearch = "Elasticsearch decodes gzip request bodies, not zstd",
  otlp = "OTLP/HTTP defines gzip as its only request compression",
}

-- compression ("none", "gzip", "zstd"; `gzip = true` is "gzip"), into
-- entry.compression (left out for "none").
function Check:compression(o, where, entry)
  local c
  if o.gzip ~= nil then
    if type(o.gzip) ~= "boolean" then self:fail(where .. ".gzip", "must be true or false") end
    c = o.gzip and "gzip" or "none"
  end
  if o.compression ~= nil then
    local chosen = self:choice(o.compression, where .. ".compression", { "none", "gzip", "zstd" })
    if c and c ~= chosen then
      self:fail(where .. ".gzip", "says %s but compression = %q: set only compression",
                o.gzip and "true" or "false", chosen)
    end
    c = chosen
  end
  if c == "zstd" and NO_ZSTD[entry.type] then
    self:fail(where .. ".compression", "cannot be \"zstd\" for outputs of type %q: %s (use \"gzip\")",
              entry.type, NO_ZSTD[entry.type])
  end
  if c and c ~= "none" then entry.compression = c end
end

-- A nats output's subject template (engine/output_nats.c): the reason it
-- is wrong, or nil.
local function subject_problem(t)
  if t == "" then return "is empty" end
  local rest = t:gsub("{([^{}]*)}", function(f)
    if f == "" or not f:match("^[%w_]+$") then return "\0bad" end
    return "x"
  end)
  if rest:find("\0bad", 1, true) then
    return "names a field with a character other than letters, digits and _ (or an empty {})"
  end
  if rest:find("[{}]") then return "has an unclosed { or a } without {" end
  if rest:find("[%s%*>%c]") then return "holds a space, * or > outside a {field}" end
  if rest:sub(1, 1) == "." or rest:sub(-1) == "." or rest:find("..", 1, true) then
    return "has an empty token (a leading or trailing dot, or \"..\")"
  end
  if #t > 1000 then return "is too long" end
  return nil
end

-- The settings of a nats output (engine/output_nats.c), into entry.
function Check:nats_output(o, where, entry)
  local urls = o.url
  if urls == nil then urls = { "nats://127.0.0.1:4222" } end
  if type(urls) == "string" then urls = { urls } end
  if type(urls) ~= "table" or #urls == 0 then
    self:fail(where .. ".url", "must be a nats:// address or a list of them")
  end
  for i, u in ipairs(urls) do
    local w = #urls > 1 and join(where .. ".url", i) or where .. ".url"
    if type(u) ~= "string" or not (u:match("^nats://[^/]+$") or u:match("^tls://[^/]+$")) then
      local shown = type(u) == "string" and show((u:gsub("^(%a[%w+.-]*://)[^/?#]*@", "%1***@"))) or show(u)
      self:fail(w, "must be nats://host:port or tls://host:port (got %s)", shown)
    end
    if u:find("@", 1, true) then
      self:fail(w, "holds credentials: give them with user and password_env/password_file, token_env/token_file or creds_file")
    end
  end
  entry.urls = urls
  entry.subject = self:nonempty_string(o.subject, where .. ".subject")
  local problem = subject_problem(entry.subject)
  if problem then self:fail(where .. ".subject", "%s (got %s)", problem, show(entry.subject)) end
  if o.stream ~= nil then
    entry.stream = self:nonempty_string(o.stream, where .. ".stream")
    if entry.stream:find("[%s%.%*>/\\]") then
      self:fail(where .. ".stream", "must be a stream name: no spaces, ., *, >, / or \\ (got %s)", show(entry.stream))
    end
  end
  local secrets = 0
  if o.user ~= nil then entry.user = self:nonempty_string(o.user, where .. ".user") end
  if o.password_env ~= nil then entry.password_env = self:env(o.password_env, where .. ".password_env") end
  if o.password_file ~= nil then entry.password_file = self:nonempty_string(o.password_file, where .. ".password_file") end
  if (o.password_env ~= nil or o.password_file ~= nil) and o.user == nil then
    self:fail(where .. ".user", "must be set with password_env or password_file")
  end
  if o.password_env ~= nil and o.password_file ~= nil then
    self:fail(where .. ".password_file", "and password_env both give the password: keep one")
  end
  if o.token_env ~= nil then entry.token_env = self:env(o.token_env, where .. ".token_env") end
  if o.token_file ~= nil then entry.token_file = self:nonempty_string(o.token_file, where .. ".token_file") end
  if o.creds_file ~= nil then entry.creds_file = self:nonempty_string(o.creds_file, where .. ".creds_file") end
  if o.user ~= nil then secrets = secrets + 1 end
  if o.token_env ~= nil or o.token_file ~= nil then secrets = secrets + 1 end
  if o.token_env ~= nil and o.token_file ~= nil then
    self:fail(where .. ".token_file", "and token_env both give the token: keep one")
  end
  if o.creds_file ~= nil then secrets = secrets + 1 end
  if secrets > 1 then
    self:fail(where, "takes one way to authenticate: user (with a password), a token or creds_file")
  end
  if o.tls_ca_file ~= nil then entry.tls_ca_file = self:nonempty_string(o.tls_ca_file, where .. ".tls_ca_file") end
  self:retrying(o, where, entry, true)
  if o.concurrency ~= nil then
    entry.concurrency = self:whole(o.concurrency, where .. ".concurrency", "bodies", 1, 64)
  end
  if o.dead_letter ~= nil then
    entry.dead_letter = self:writable(self:nonempty_string(o.dead_letter, where .. ".dead_letter"),
                                      where .. ".dead_letter")
  end
end

-- Loki's labels, tenant and line_format (engine/encode_loki.c), into entry:
-- entry.labels (record fields), entry.label_names and entry.label_values
-- (static labels, sorted by name), entry.tenant, entry.line_format.
function Check:loki_output(o, where, entry)
  local w = where .. ".labels"
  local fields, static = {}, {}
  if o.labels == nil then
    fields, static = { "name", "stream" }, { job = "engine" }
  elseif type(o.labels) == "string" then
    fields = { self:nonempty_string(o.labels, w) }
  else
    self:table(o.labels, w)
    local n = 0
    for k, v in pairs(o.labels) do
      if type(k) == "string" then
        if k == "" then self:fail(w, "has an empty label name") end
        if type(v) ~= "string" or v == "" then
          self:fail(join(w, k), "must be a non-empty string: a static label's value (got %s)", show(v))
        end
        static[k] = v
      elseif type(k) ~= "number" or k < 1 or floor(k) ~= k then
        self:fail(w, "must list record fields and map label names to values (found the key %s)", show(k))
      else
        n = n + 1
      end
    end
    for i = 1, n do
      local f = o.labels[i]
      if f == nil then self:fail(w, "must list record fields (no item %d)", i) end
      if type(f) ~= "string" or f == "" then
        self:fail(join(w, i), "must be a non-empty string: a record field (got %s)", show(f))
      end
      fields[i] = f
    end
    if n == 0 and next(static) == nil then
      self:fail(w, "must name at least one label (Loki takes no stream without labels)")
    end
  end
  local names = {}
  for k in pairs(static) do names[#names + 1] = k end
  table.sort(names)
  local values = {}
  for i, k in ipairs(names) do values[i] = static[k] end
  entry.labels, entry.label_names, entry.label_values = fields, names, values
  if o.tenant ~= nil then
    local t = self:nonempty_string(o.tenant, where .. ".tenant")
    -- Loki's tenant ids: up to 150 of these characters, neither "." nor ".."
    if #t > 150 or not t:match("^[%w!%-_%.%*'()]+$") or t == "." or t == ".." then
      self:fail(where .. ".tenant", "must be a Loki tenant id: up to 150 letters, digits and !-_.*'() (got %s)",
                show(t))
    end
    for _, h in ipairs(entry.headers or {}) do
      if h:lower():match("^x%-scope%-orgid:") then
        self:fail(where .. ".tenant", "and headers[\"X-Scope-OrgID\"] both set the tenant: keep one")
      end
    end
    entry.tenant = t
  end
  entry.line_format = o.line_format == nil and "raw"
    or self:choice(o.line_format, where .. ".line_format", { "raw", "json" })
end

-- An MQTT topic template: levels of text and {field} parts (engine/output_mqtt.c).
function Check:topic_template(v, where)
  self:nonempty_string(v, where)
  if #v > 65535 or v:find("%z") then
    self:fail(where, "must be at most 65535 bytes without NUL (got %d bytes)", #v)
  end
  local rest = v:gsub("{([^{}]*)}", function(field)
    if not field:match("^[%w_]+$") then
      self:fail(where, "names the field {%s}: a field is letters, digits and _ (got %s)", field, show(v))
    end
    return "x"
  end)
  if rest:find("[{}]") then
    self:fail(where, "has an unmatched { or } (got %s); a field is written {name}", show(v))
  end
  if rest:find("[+#]") then
    self:fail(where, "must not hold the wildcards + or # (got %s): a message is published to one topic", show(v))
  end
  if rest:find("[%c]") then
    self:fail(where, "must not hold control characters (got %s)", show(v))
  end
  return v
end

-- The settings of an mqtt output (engine/output_mqtt.c), into entry.
function Check:mqtt_output(o, where, entry)
  entry.host = self:nonempty_string(o.host, where .. ".host")
  if entry.host:find("[/%s@]") then
    self:fail(where .. ".host", "must be a host name or an IP address, without scheme or port (got %s)",
              show(entry.host))
  end
  entry.topic = self:topic_template(o.topic, where .. ".topic")
  if o.port ~= nil then entry.port = self:whole(o.port, where .. ".port", "port", 1, 65535) end
  if o.keepalive ~= nil then
    entry.keepalive = self:whole(o.keepalive, where .. ".keepalive", "seconds", 5, 65535)
  end
  if o.max_inflight ~= nil then
    entry.max_inflight = self:whole(o.max_inflight, where .. ".max_inflight", "messages", 1, 65535)
  end
  if o.client_id ~= nil then
    entry.client_id = self:nonempty_string(o.client_id, where .. ".client_id")
    if #entry.client_id > 65535 or entry.client_id:find("[%c]") then
      self:fail(where .. ".client_id", "must be at most 65535 bytes without control characters")
    end
  end
  if o.username ~= nil then entry.username = self:nonempty_string(o.username, where .. ".username") end
  if o.password_env ~= nil and o.password_file ~= nil then
    self:fail(where .. ".password_env", "and password_file both give the password: keep one")
  end
  if o.password_env ~= nil then entry.password_env = self:env(o.password_env, where .. ".password_env") end
  if o.password_file ~= nil then
    entry.password_file = self:nonempty_string(o.password_file, where .. ".password_file")
    local f = io and io.open(entry.password_file, "r")
    if io and not f then
      self:fail(where .. ".password_file", "names %s, which cannot be read", show(entry.password_file))
    end
    if f then f:close() end
  end
  if (entry.password_env or entry.password_file) and not entry.username then
    self:fail(where .. ".username", "must be set with a password (MQTT sends a password only with a user name)")
  end
  if o.tls_ca_file ~= nil then
    entry.tls_ca_file = self:nonempty_string(o.tls_ca_file, where .. ".tls_ca_file")
    local f = io and io.open(entry.tls_ca_file, "r")
    if io and not f then
      self:fail(where .. ".tls_ca_file", "names %s, which cannot be read", show(entry.tls_ca_file))
    end
    if f then f:close() end
  end
  if o.record_id ~= nil then
    if type(o.record_id) ~= "boolean" then self:fail(where .. ".record_id", "must be true or false") end
    entry.record_id = o.record_id
  end
  self:retrying(o, where, entry, false)
  self:merging(o, where, entry)
  if o.dead_letter ~= nil then
    entry.dead_letter = self:writable(self:nonempty_string(o.dead_letter, where .. ".dead_letter"),
                                      where .. ".dead_letter")
  end
end

function Check:output(o, where, i, n)
  self:table(o, where)
  local mode
  if o.mode ~= nil then
    mode = type(o.mode) == "string" and o.mode:match("^[0-7]+$") and tonumber(o.mode, 8) or o.mode
    if type(mode) ~= "number" or mode < 0 or mode > 511 or floor(mode) ~= mode then
      self:fail(where .. ".mode", "must be a file mode as octal text, e.g. \"0640\" (got %s)", show(o.mode))
    end
  end
  local entry = {
    type = self:choice(o.type, where .. ".type", OUTPUT_TYPES),
    format = "json",
    routed_only = false,
  }
  self:keys(o, OUTPUT_KEYS[entry.type], where, function(k) return not_for(k, entry.type) end)
  entry.name = entry.type
  if n > 1 then entry.name = entry.type .. i end
  entry.mode = mode
  if mode ~= nil and entry.type ~= "file" and o.dead_letter == nil then
    self:fail(where .. ".mode", "is for the files an output writes: a file output, or a dead_letter file")
  end
  if entry.type == "mqtt" then
    if o.name ~= nil then entry.name = self:nonempty_string(o.name, where .. ".name") end
    self:mqtt_output(o, where, entry)
    if o.routed_only ~= nil then entry.routed_only = o.routed_only == true end
    return entry
  end
  if entry.type == "nats" then
    if o.name ~= nil then entry.name = self:nonempty_string(o.name, where .. ".name") end
    self:nats_output(o, where, entry)
    if o.routed_only ~= nil then entry.routed_only = o.routed_only == true end
    return entry
  end
  if NETWORK[entry.type] then
    if o.name ~= nil then entry.name = self:nonempty_string(o.name, where .. ".name") end
    self:network_output(o, where, entry)
    if o.routed_only ~= nil then entry.routed_only = o.routed_only == true end
    return entry
  end
  if o.format ~= nil then entry.format = self:choice(o.format, where .. ".format", { "json", "plain" }) end
  if o.name ~= nil then entry.name = self:nonempty_string(o.name, where .. ".name") end
  if o.routed_only ~= nil then
    if type(o.routed_only) ~= "boolean" then
      self:fail(where .. ".routed_only", "must be true or false (got %s)", show(o.routed_only))
    end
    entry.routed_only = o.routed_only
  end
  if entry.type == "file" then
    entry.path = self:writable(self:nonempty_string(o.path, where .. ".path"), where .. ".path")
    if o.max_bytes ~= nil then entry.max_bytes = self:size(o.max_bytes, where .. ".max_bytes") end
    entry.keep = 5
    if o.keep ~= nil then
      self:number(o.keep, where .. ".keep")
      if o.keep < 0 or o.keep > 1000 or floor(o.keep) ~= o.keep then
        self:fail(where .. ".keep", "must be an integer from 0 to 1000 (got %s)", show(o.keep))
      end
      entry.keep = o.keep
    end
  end
  return entry
end

function Check:outputs(v)
  if v == nil then
    return { { type = "stdout", name = "stdout", format = "json", routed_only = false } }
  end
  self:table(v, "outputs")
  if v.type ~= nil then
    self:fail("outputs", "must be a list of outputs, e.g. { { type = \"stdout\" } }")
  end
  local n = self:list(v, "outputs", "outputs")
  if n == 0 then self:fail("outputs", "must list at least one output") end
  local out, seen = {}, {}
  for i = 1, n do
    local where = join("outputs", i)
    local entry = self:try("output", v[i], where, i, n)
    if entry then
      if seen[entry.name] then
        self:note(self:message(where .. ".name", format("%q is already the name of outputs[%d]",
                                                        entry.name, seen[entry.name])))
      end
      seen[entry.name] = i
    end
    out[i] = entry
  end
  return out
end

-- Engine settings and how each is checked.
local ENGINE_KEYS = {
  cycle = "positive", stop_timeout = "positive", filter_timeout = "nonnegative",
  reconcile_interval = "positive", backoff_initial = "positive", backoff_max = "positive",
  resume_margin = "positive", line_max = "size", frame_max = "size", log_level = "level",
  stats_interval = "nonnegative", lua_memory = "memory",
  state_dir = "state_dir", checkpoint_interval = "positive", fsync = "boolean",
  max_buffered = "size", max_readers = "size", max_events_per_second = "size", metrics = "metrics",
  filter_isolation = "isolation",
}

-- Where cursors are saved: a folder, or false to keep them in memory.
function Check:state_dir(v, where)
  if v == false then return false end
  return self:writable(self:nonempty_string(v, where), where, true)
end

function Check:boolean(v, where)
  if type(v) ~= "boolean" then self:fail(where, "must be true or false (got %s)", show(v)) end
  return v
end

local MEMORY_MIN = 1048576

-- A byte count for the Lua state: an integer from 1 MiB.
function Check:memory(v, where)
  self:number(v, where)
  if v < MEMORY_MIN or v > 2^40 or floor(v) ~= v then
    self:fail(where, "must be an integer number of bytes from %d (1 MiB) (got %s)", MEMORY_MIN, show(v))
  end
  return v
end

-- The metrics endpoint: { listen = "host:port" | ":port" | "port",
-- max_containers = n }. Returns { listen = "host:port" (host 127.0.0.1 when
-- left out), max_containers = n|nil }.
function Check:metrics(v, where)
  self:table(v, where)
  self:keys(v, { listen = true, max_containers = true }, where)
  local out = {}
  if v.max_containers ~= nil then
    out.max_containers = self:size(v.max_containers, where .. ".max_containers")
  end
  local listen, lw = v.listen, where .. ".listen"
  if listen == nil then self:fail(lw, "is required (for example \"127.0.0.1:9180\")") end
  if type(listen) == "number" then listen = tostring(listen) end
  if type(listen) ~= "string" then self:fail(lw, "must be a string \"host:port\" (got %s)", show(listen)) end
  local host, port = listen:match("^%[([%x:.]+)%]:(%d+)$")
  if not host then host, port = listen:match("^([%w%.%-]*):(%d+)$") end
  if not host and listen:match("^%d+$") then host, port = "", listen end
  if not host then
    self:fail(lw, "must be \"host:port\", \":port\" or \"[ipv6]:port\" (got %s)", show(listen))
  end
  local p = tonumber(port)
  if p < 1 or p > 65535 then self:fail(lw, "has a port out of 1..65535 (got %s)", show(listen)) end
  if host == "" then host = "127.0.0.1" end
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  out.listen = host .. ":" .. p
  return out
end

function Check:engine(v)
  if v == nil then return {} end
  self:table(v, "engine")
  self:keys(v, ENGINE_KEYS, "engine")
  local out, keys = {}, {}
  for key in pairs(ENGINE_KEYS) do keys[#keys + 1] = key end
  table.sort(keys)
  for _, key in ipairs(keys) do
    local kind = ENGINE_KEYS[key]
    local val, where = v[key], "engine." .. key
    if val ~= nil then
      if kind == "level" then
        out[key] = self:try("choice", val, where, { "error", "warn", "info", "debug" })
      elseif kind == "isolation" then
        out[key] = self:try("choice", val, where, { "process", "thread" })
      else
        out[key] = self:try(kind, val, where)
      end
    end
  end
  if out.backoff_initial and out.backoff_max and out.backoff_max < out.backoff_initial then
    self:fail("engine.backoff_max", "(%s) must not be less than engine.backoff_initial (%s)",
      show(out.backoff_max), show(out.backoff_initial))
  end
  return out
end

local TOP_KEYS = {
  docker = true, select = true, history = true, batch = true,
  filters = true, outputs = true, engine = true, dead_letter = true,
}

--- Checks the table a pipeline.lua returned. Returns the normal form described
-- at the top of this file; raises "path:line: what is wrong" (one line per
-- mistake, see the top of this file) otherwise. source is the file's text
-- (nil: read from path) for the lines. opts.writable(path, is_dir), when
-- given (`engine check`), says why the engine could not write a file or
-- folder the pipeline names (nil when it could).
function M.validate(tbl, path, source, opts)
  path = path or "pipeline.lua"
  if source == nil then
    local f = io.open(path, "rb")
    if f then
      source = f:read("*a")
      f:close()
    end
  end
  local c = setmetatable({ path = path, source = source, errors = {},
                           can_write = opts and opts.writable }, Check)
  if type(tbl) ~= "table" then c:fail(nil, "must return a table (got %s)", show(tbl)) end
  local out
  local ok, err = pcall(function()
    c:keys(tbl, TOP_KEYS, "")
    local dead_letter
    if tbl.dead_letter ~= nil then dead_letter = c:try("dead_letter", tbl.dead_letter, "dead_letter") end
    local host = tbl.docker == nil or type(tbl.docker) == "table" and tbl.docker.host == nil and
      (#tbl.docker == 0 or (function()
        for _, e in ipairs(tbl.docker) do
          if type(e) == "table" and e.host == nil then return true end
        end
      end)())
    out = {
      dead_letter = dead_letter and { path = dead_letter } or nil,
      docker = c:try("docker", tbl.docker),
      select = c:try("select", tbl.select),
      batch = c:try("batch", tbl.batch),
      filters = c:try("filters", tbl.filters, dead_letter),
      outputs = c:try("outputs", tbl.outputs),
      engine = c:try("engine", tbl.engine),
    }
    if tbl.history ~= nil then out.history = c:try("choice", tbl.history, "history", { "all", "start" }) end
    -- Without docker.host, the daemon is $DOCKER_HOST's.
    local env_host = os.getenv("DOCKER_HOST")
    if host and env_host and env_host ~= "" then
      local ok_env, msg = pcall(c.docker_host, c, env_host, "$DOCKER_HOST")
      if not ok_env then c:note(msg) end
    end
  end)
  if not ok and err ~= FULL then error(err, 0) end
  if #c.errors > 0 then
    -- in the order of the file's lines (those without a line last)
    local order = {}
    for i, e in ipairs(c.errors) do
      local line = e:sub(#path + 1):match("^:(%d+):")
      order[i] = { e = e, line = tonumber(line) or math.huge, i = i }
    end
    table.sort(order, function(a, b)
      if a.line ~= b.line then return a.line < b.line end
      return a.i < b.i
    end)
    for i, o in ipairs(order) do c.errors[i] = o.e end
    local text = table.concat(c.errors, "\n")
    if err == FULL then text = text .. "\n" .. path .. ": (stopped after " .. MAX_ERRORS .. " mistakes)" end
    error(text, 0)
  end
  return out
end

return M
