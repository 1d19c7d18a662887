-- A real Prometheus server (Debian's `prometheus`, on loopback, its config
-- and storage in a temporary folder) scrapes the engine's /metrics every
-- second: the scrape must be healthy (up == 1, so the whole page parsed)
-- and the per-container line counters must equal what the fake Docker
-- server's containers logged.
local cjson = require "cjson"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local engine = require "spec.support.engine"
local proc = require "spec.support.proc"

local LINES = 150
local PROMETHEUS = os.getenv("PROMETHEUS") or "prometheus"

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Starts Prometheus scraping target ("host:port") on a free port. Returns
-- its process, its base URL and its folder.
local function start_prometheus(target)
  local ok, dir = proc.sh("mktemp -d /tmp/prom-spec.XXXXXX")
  assert(ok, dir)
  dir = dir:gsub("%s+$", "")
  write(dir .. "/prometheus.yml", string.format([[
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: engine
    static_configs:
      - targets: ['%s']
]], target))
  for _ = 1, 8 do
    local port = metrics.random_port()
    local p = proc.spawn {
      argv = { PROMETHEUS, "--config.file=" .. dir .. "/prometheus.yml",
               "--storage.tsdb.path=" .. dir .. "/data",
               "--web.listen-address=127.0.0.1:" .. port },
      stdout = dir .. "/stdout", stderr = dir .. "/stderr",
    }
    local url = "http://127.0.0.1:" .. port
    local up = pcall(proc.wait_for, function()
      if not p:running() then error("exited", 0) end
      return proc.sh("curl -s -f --max-time 2 " .. url .. "/-/ready", 5)
    end, 60, "Prometheus to be ready")
    if up then return p, url, dir end
    local log = proc.read(dir .. "/stderr") or ""
    if p:running() then p:kill() end
    p:cleanup()
    if not log:find("address already in use", 1, true) then
      proc.sh("rm -rf " .. proc.quote(dir))
      error("Prometheus did not start:\n" .. log)
    end
  end
  error("no free port for Prometheus")
end

-- Runs an instant query; returns the result list.
local function query(url, q)
  local ok, out = proc.sh(proc.join { "curl", "-s", "-f", "--max-time", "5", "-G",
                                      "--data-urlencode", "query=" .. q, url .. "/api/v1/query" }, 10)
  assert(ok, "query " .. q .. " failed: " .. out)
  local doc = cjson.decode(out)
  assert.equal("success", doc.status)
  return doc.data.result
end

-- The one value of an instant query (a number), or nil when there is none.
local function scalar(url, q)
  local r = query(url, q)
  if #r == 0 then return nil end
  assert.equal(1, #r, q)
  return tonumber(r[1].value[2])
end

describe("a Prometheus server scraping the engine #sanitize", function()
  local srv, e, prom, pdir
  after_each(function()
    local dprom, dpdir, de, dsrv = prom, pdir, e, srv
    srv, e, prom, pdir = nil, nil, nil, nil
    proc.each(function()
                if not dprom then return end
                dprom:signal("TERM")
                if not dprom:wait(15) then dprom:kill() end
                dprom:cleanup()
              end,
              function() if dpdir then proc.sh("rm -rf " .. proc.quote(dpdir)) end end,
              function() if de and de:running() then de:stop("TERM", 15) end end,
              function() engine.release(de, dsrv) end)
  end)

  it("scrapes a healthy page whose line counters match what the containers logged", function()
    srv = fake.start { "--containers", "3", "--rate", "100", "--lines", tostring(LINES) }
    local url
    e, url = metrics.start_engine { docker_host = srv.host }
    local purl
    prom, purl, pdir = start_prometheus(url:match("^http://(.*)$"))
    proc.wait_for(function() return scalar(purl, 'up{job="engine"}') == 1 end, 60,
                  "a healthy scrape (up == 1)")
    proc.wait_for(function()
      for _, c in ipairs { "c0", "c1", "c2" } do
        if scalar(purl, string.format('engine_lines_read_total{container="%s"}', c)) ~= LINES then
          return false
        end
      end
      return true
    end, 60, "every container's final line count in Prometheus")
    assert.equal(LINES, scalar(purl, 'engine_lines_read_total{job="engine",container="c0"}'))
    assert.equal(3, scalar(purl, "engine_readers_started_total"))
    assert.equal(3 * LINES, scalar(purl, "engine_records_in_total"))
    assert.equal(1, scalar(purl, 'up{job="engine"}'))
    -- Prometheus took every sample of the page (the page no longer changes
    -- in size: every container finished)
    local page = metrics.parse((select(2, metrics.get(url .. "/metrics"))))
    assert.is_true(#page.samples > 40)
    proc.wait_for(function()
      return scalar(purl, 'scrape_samples_scraped{job="engine"}') == #page.samples
    end, 30, "scrape_samples_scraped to equal the samples on the page")
    assert.equal(0, e:stop())
  end)
end)
