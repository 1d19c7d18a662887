-- local-reads.lua - what a Docker daemon's own API reads return of a fast
-- local-driver log, without the engine: the measure behind the local-driver
-- cases of spec/integration/repeats_spec.lua.
--
--   DOCKER_HOST=unix:///DIR/docker.sock luajit scripts/dev/local-reads.lua \
--     [MAX_SIZE] [BACK_S] [INTERVAL_S] [LOG_OPT...]
--
-- Runs a container (image engine-test, scripts/test/dockerd.sh) with the
-- local log driver and --log-opt max-size=MAX_SIZE (default 64k) and any
-- further --log-opt LOG_OPT (e.g. compress=false), writing 20,000 numbered
-- lines at up to 4,000 a second, and while it runs reads its log every
-- INTERVAL_S seconds (default 0.2) without follow, `since` BACK_S seconds
-- (default 0) before the newest line the reads returned so far. Prints how
-- many of the lines some read returned. Only the daemon at DOCKER_HOST (a
-- unix socket) is used; the container is removed at the end.
local N = 20000
local size, back, interval = arg[1] or "64k", tonumber(arg[2] or "0"), tonumber(arg[3] or "0.2")
local sock = assert((os.getenv("DOCKER_HOST") or ""):match("^unix://(.+)$"),
                    "DOCKER_HOST must be unix:///path/to/docker.sock")

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local opts = ""
for i = 4, #arg do opts = opts .. " --log-opt " .. arg[i] end
local cmd = string.format('sleep 1; i=1; while [ $i -le %d ]; do echo "line $i x"; i=$((i+1)); ' ..
                          '[ $((i %% 20)) = 0 ] && usleep 5000; done; sleep 1', N)
local id = sh("docker run -d --network none --log-driver local --log-opt max-size=" .. size .. opts ..
              " engine-test sh -c '" .. cmd .. "'"):match("%x+")
assert(id, "docker run failed")

-- "2026-01-02T03:04:05.123456789Z" -> seconds and nanoseconds since the epoch
local function epoch(ts)
  local y, mo, d, h, mi, s, frac = ts:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.?(%d*)Z$")
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end -- days from 1970-01-01 of a proleptic Gregorian date
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (mo > 2 and mo - 3 or mo + 9) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  return days * 86400 + h * 3600 + mi * 60 + s, tonumber((frac .. "000000000"):sub(1, 9))
end

local got, count, reads, since = {}, 0, 0, "0"
local tmp = os.tmpname()
repeat
  local running = sh("docker inspect -f '{{.State.Running}}' " .. id):match("true")
  sh(string.format("curl -s --unix-socket %s -o %s 'http://d/containers/%s/logs?stdout=1&stderr=1" ..
                   "&timestamps=1&since=%s'", sock, tmp, id, since))
  reads = reads + 1
  local f = assert(io.open(tmp, "rb"))
  local body = f:read("*a")
  f:close()
  local pos, last = 1, nil
  while pos + 7 <= #body do -- the multiplexed frames of a non-TTY container
    local b5, b6, b7, b8 = body:byte(pos + 4, pos + 7)
    local len = ((b5 * 256 + b6) * 256 + b7) * 256 + b8
    local ts, text = body:sub(pos + 8, pos + 7 + len):match("^(%S+) (.-)\n?$")
    pos = pos + 8 + len
    local n = tonumber((text or ""):match("^line (%d+) x$"))
    if n and not got[n] then got[n], count = true, count + 1 end
    last = ts or last
  end
  if last then
    local sec, ns = epoch(last)
    since = string.format("%d.%09d", sec - back, ns)
  end
  if running then os.execute("sleep " .. interval) end
until not running
os.remove(tmp)
sh("docker rm -f " .. id .. " >/dev/null 2>&1")
print(string.format("max-size=%s%s, a read every %.2f s from %d s before the newest line: " ..
                    "%d reads returned %d of %d lines", size, opts, interval, back, reads, count, N))
