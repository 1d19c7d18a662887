-- `engine top`, driven in a real terminal by tmux (a private tmux server on
-- its own socket, a 120x40 window): it shows the containers with a nonzero
-- rate, `q` and Ctrl-C end it and give the shell back with the terminal as
-- it was; without a terminal it prints plain lines.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"

local PROMPT = "prompt> "
local PROMPT_SHOWN = "prompt>" -- capture-pane drops trailing spaces

local Tmux = {}
Tmux.__index = Tmux

local function tmux_start()
  local ok, dir = proc.sh("mktemp -d /tmp/top-spec.XXXXXX")
  assert(ok, dir)
  dir = dir:gsub("%s+$", "")
  local t = setmetatable({ dir = dir, sock = dir .. "/tmux.sock" }, Tmux)
  t:run { "new-session", "-d", "-x", "120", "-y", "40", "env PS1='" .. PROMPT .. "' TERM=xterm sh" }
  local ok, err = pcall(proc.wait_for, function() return t:screen():find(PROMPT_SHOWN, 1, true) end,
                        10, "the shell in tmux")
  if not ok then
    t:stop()
    error(err, 2)
  end
  return t
end

function Tmux:run(args)
  local argv = { "tmux", "-S", self.sock }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local ok, out = proc.sh(proc.join(argv), 20)
  assert(ok, "tmux " .. table.concat(args, " ") .. ": " .. out)
  return out
end

function Tmux:screen() return self:run { "capture-pane", "-p" } end
function Tmux:type(text) self:run { "send-keys", "-l", text } end
function Tmux:key(k) self:run { "send-keys", k } end

function Tmux:stop()
  proc.sh(proc.join { "tmux", "-S", self.sock, "kill-server" }, 10)
  proc.sh("rm -rf " .. proc.quote(self.dir))
end

-- The row of container name on a top screen: state and lines per second.
local function container_row(screen, name)
  for line in screen:gmatch("[^\n]+") do
    local state, rate = line:match("^" .. name .. "%s+(%a+)%s+([%d%.k-]+)")
    if state then return state, rate end
  end
end

-- Waits until top shows both containers streaming with a nonzero rate.
local function wait_for_rates(t)
  local screen
  proc.wait_for(function()
    screen = t:screen()
    for _, c in ipairs { "c0", "c1" } do
      local state, rate = container_row(screen, c)
      if state ~= "streaming" or not tonumber(rate) or tonumber(rate) <= 0 then return false end
    end
    return true
  end, 30, "engine top to show c0 and c1 with a nonzero rate")
  return screen
end

-- The screen once the shell is back with the exit line of the command.
local function wait_for_exit(t, marker)
  local screen
  proc.wait_for(function()
    screen = t:screen()
    return screen:find(marker .. "%d+%s*\n" .. PROMPT_SHOWN)
  end, 15, "engine top to exit and the prompt to come back")
  return screen
end

-- Waits until n containers in the engine at url delivered lines.
local function wait_lines(url, n, what)
  proc.wait_for(function()
    local _, body = metrics.get(url .. "/readers")
    local k = 0
    for _, r in ipairs(require("cjson").decode(body)) do if r.lines > 0 then k = k + 1 end end
    return k == n
  end, 30, what)
end

describe("engine top #sanitize", function()
  local srv, e, t
  after_each(function()
    local dt, de, dsrv = t, e, srv
    srv, e, t = nil, nil, nil
    proc.each(function() if dt then dt:stop() end end,
              function() if de and de:running() then de:stop("TERM", 15) end end,
              function() engine.release(de, dsrv) end)
  end)

  local function start()
    srv = fake.start { "--containers", "2", "--rate", "50" }
    local url
    e, url = metrics.start_engine {
      docker_host = srv.host,
      filters = [[ { name = "pass-all", process = function(b) return b end } ]],
    }
    return url
  end

  it("shows the containers with their rates in a terminal, and q gives the shell back", function()
    local url = start()
    t = tmux_start()
    t:type(engine.bin() .. " top " .. url .. "; echo top-exited-$?")
    t:key("Enter")
    local screen = wait_for_rates(t)
    assert.matches("CONTAINER%s+STATE%s+LINES/S", screen)
    assert.matches("\npass%-all%s+[%d%.]+%s+0%s+0", screen)
    assert.matches("q: quit", screen)
    assert.matches("OUTPUT%s+SENT/S%s+FAILED%s+RETRIED%s+DEAD%s+PENDING%s+IN_FLIGHT%s+REC/REQ%s+BYTES/REQ%s+AGE_S",
                   screen)
    assert.matches("\nstdout%s+[%d%.]+%s+0%s+0%s+0%s+%d+%s+[01]%s+[%d%.k]+%s+[%d%.k]+%s+[%d%.]+", screen)
    -- drawn in place: one header however many refreshes ran
    local _, headers = screen:gsub("CONTAINER", "")
    assert.equal(1, headers)
    t:type("q")
    screen = wait_for_exit(t, "top%-exited%-")
    assert.matches("top%-exited%-0", screen)
    assert.is_nil(screen:find("CONTAINER", 1, true)) -- the alternate screen is gone
    assert.equal(0, e:stop())
  end)

  it("ends on Ctrl-C and restores the terminal's modes", function()
    local url = start()
    t = tmux_start()
    t:type(engine.bin() .. " top " .. url .. "; echo top-exited-$?")
    t:key("Enter")
    wait_for_rates(t)
    t:key("C-c")
    local screen = wait_for_exit(t, "top%-exited%-")
    assert.matches("top%-exited%-0", screen)
    t:type("stty -a | tr ' ' '\\n' | grep -x -e '-*icanon' -e '-*echo'; echo stty-done")
    t:key("Enter")
    proc.wait_for(function()
      screen = t:screen()
      return screen:find("\nstty%-done%s*\n") -- its own line, not the typed command's end
    end, 10, "stty's answer")
    assert.matches("\nicanon\n", screen)
    assert.matches("\necho\n", screen)
    assert.equal(0, e:stop())
  end)

  it("prints plain lines when stdout is not a terminal", function()
    local url = start()
    -- wait until both containers delivered lines, so each refresh lists them
    wait_lines(url, 2, "lines of c0 and c1")
    local ok, out = proc.sh(proc.join { engine.bin(), "top", url, "-n", "3", "-d", "0.5" } .. " | cat", 30)
    assert(ok, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    -- 3 refreshes: c0, c1, the filter and the output each time
    assert.equal(12, #lines, out)
    -- a rate is "-" on the first refresh (nothing to compare with), then
    -- the change of the line count per second: above 0 exactly when the
    -- count grew since the refresh before (however fast the lines came)
    local last, rows = {}, 0
    for i, line in ipairs(lines) do
      assert.is_nil(line:find("\027", 1, true), "no escape sequences")
      local name, n, rate = line:match("^%S+Z container (c%d) state=%a+ lines=(%d+) lines_per_s=(%S+) ")
      if name then
        rows = rows + 1
        n = tonumber(n)
        if not last[name] then
          assert.equal("-", rate, line)
        else
          assert.is_true(n >= last[name], line)
          assert.equal(n > last[name], tonumber(rate) > 0, line)
        end
        last[name] = n
      elseif not line:find(" output stdout ", 1, true) then
        assert.matches("filter pass%-all calls=%d+ calls_per_s=", line)
      end
    end
    assert.equal(6, rows, out)
    assert.matches("output stdout sent=%d+ sent_per_s=%S+ failed=0 retried=0 dead_letters=0 pending=%d+ "
                   .. "in_flight=[01] requests=%d+ records_per_request=%S+ bytes_per_request=%S+ "
                   .. "queue_age=[%d.]+\n", out)
    -- the requests (writes) go up while lines come; each carries records,
    -- each record more than one byte
    local function value(text) -- top's figures: 12.5, 3.4k, 1.2M
      local n, unit = text:match("^([%d.]+)([kM]?)$")
      assert(n, "not a figure: " .. text)
      return tonumber(n) * (({ k = 1e3, M = 1e6 })[unit] or 1)
    end
    local reqs = {}
    for n, rpr, bpr, age in out:gmatch(" output stdout .- requests=(%d+) records_per_request=(%S+) "
                                       .. "bytes_per_request=(%S+) queue_age=([%d.]+)\n") do
      reqs[#reqs + 1] = tonumber(n)
      if n == "0" then -- nothing to divide by yet
        assert.equal("-", rpr)
        assert.equal("-", bpr)
      else
        assert.is_true(value(rpr) >= 1, rpr)
        assert.is_true(value(bpr) > value(rpr), bpr)
      end
      assert.is_true(tonumber(age) >= 0, age)
    end
    assert.equal(3, #reqs, out)
    assert.is_true(reqs[3] > reqs[1], out)
    assert.equal(0, e:stop())
  end)

  it("says so when it cannot reach the engine", function()
    local ok, out, code = proc.sh(proc.join { engine.bin(), "top", "http://127.0.0.1:1", "-n", "1" }, 30)
    assert.is_false(ok)
    assert.equal(1, code)
    assert.matches("engine top: cannot read http://127%.0%.0%.1:1/readers", out)
  end)
  it("names each container's daemon when the engine follows several", function()
    local srv2
    srv = fake.start { "--containers", "1", "--rate", "50" }
    srv2 = fake.start { "--containers", "1", "--rate", "50" }
    local port = metrics.random_port()
    e = engine.start { pipeline = string.format([[
return {
  docker = { { name = "edge-a", host = %q }, { name = "edge-b", host = %q } },
  batch = { flush_interval = 0.05 },
  outputs = { { type = "stdout", format = "json" } },
  engine = { metrics = { listen = "127.0.0.1:%d" } },
}]], srv.host, srv2.host, port) }
    local url = "http://127.0.0.1:" .. port
    local ok, err = pcall(function()
      proc.wait_for(function() return e:stderr_text():find("metrics: listening on", 1, true) end, 20,
                    "the metrics endpoint")
      wait_lines(url, 2, "lines from both daemons")
      local done, out = proc.sh(proc.join { engine.bin(), "top", url, "-n", "1" } .. " | cat", 30)
      assert(done, out)
      local hosts = {}
      for host in out:gmatch(" container c0 state=%a+ .- host=(%S+)\n") do hosts[#hosts + 1] = host end
      table.sort(hosts)
      assert.same({ "edge-a", "edge-b" }, hosts, out)
    end)
    engine.release(nil, srv2)
    assert(ok, err)
  end)

end)
