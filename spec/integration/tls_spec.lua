-- A remote daemon over TLS: a private dockerd listening on
-- tcp://127.0.0.1:<port> with --tlsverify and certificates made here with
-- openssl. The engine follows it with a client certificate, given in the
-- pipeline (docker.tls) or like the docker CLI ($DOCKER_TLS_VERIFY,
-- $DOCKER_CERT_PATH); a CA that did not sign the daemon's certificate gives
-- a clear error.
local engine = require "spec.support.engine"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"
local socket = require "posix.sys.socket"
local unistd = require "posix.unistd"

-- A free TCP port on loopback: a random one that can be bound.
local function free_port()
  for _ = 1, 50 do
    local port = metrics.random_port()
    local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
    local ok = socket.bind(fd, { family = socket.AF_INET, addr = "127.0.0.1", port = port })
    unistd.close(fd)
    if ok then return port end
  end
  error("no free port found")
end

local function sh_ok(cmd, timeout_s)
  local ok, out = proc.sh(cmd, timeout_s or 60)
  assert(ok, cmd .. ": " .. out)
  return out
end

-- A CA (ca.pem), the daemon's certificate for 127.0.0.1 signed by it, a
-- client certificate (cert.pem, key.pem) signed by it, and another CA
-- (wrong-ca.pem) in dir.
local function make_certs(dir)
  local q = proc.quote(dir)
  sh_ok(table.concat({
    "cd " .. q,
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca-key.pem -out ca.pem",
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout wrong-ca-key.pem -out wrong-ca.pem",
    "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server-key.pem -out server.csr",
    "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext",
    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile server.ext -out server-cert.pem",
    "openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout key.pem -out client.csr",
    "printf 'extendedKeyUsage=clientAuth\\n' > client.ext",
    "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile client.ext -out cert.pem",
  }, " && ") .. " 2>&1", 120)
end

describe("a remote daemon over TLS", function()
  local tmp, certs, ddir, addr, sock, e

  setup(function()
    tmp = sh_ok("mktemp -d /tmp/tls.XXXXXX"):gsub("%s+$", "")
    certs = tmp .. "/certs"
    ddir = tmp .. "/d"
    sh_ok("mkdir -p " .. proc.quote(certs))
    make_certs(certs)
    addr = "127.0.0.1:" .. free_port()
    sock = sh_ok(string.format("DOCKERD_TLS_ADDR=%s DOCKERD_TLS_CERTS=%s sh scripts/test/dockerd.sh start %s",
                               addr, proc.quote(certs), proc.quote(ddir)), 180):gsub("%s+$", "")
  end)

  teardown(function()
    if ddir then proc.sh("sh scripts/test/dockerd.sh stop " .. proc.quote(ddir), 120) end
    if tmp then proc.sh("rm -rf " .. proc.quote(tmp)) end
  end)

  after_each(function()
    if e then e:cleanup() end
    e = nil
  end)

  local function docker(args)
    return sh_ok("/usr/bin/docker -H " .. proc.quote(sock) .. " " .. args, 60)
  end

  local function run_container(name)
    docker("run -d --network none --name " .. name ..
           " engine-test:latest sh -c 'for i in 1 2 3; do echo \"" .. name .. " $i\"; done; sleep 30'")
  end

  local function lines_of(recs, name)
    local got = {}
    for _, r in ipairs(recs) do if r.name == name then got[#got + 1] = r.line end end
    return got
  end

  it("refuses a client without a certificate", function()
    local ok, out = proc.sh("curl -s --max-time 10 --cacert " .. proc.quote(certs .. "/ca.pem") ..
                            " https://" .. addr .. "/_ping")
    assert.is_false(ok and out == "OK", out)
  end)

  it("follows the daemon with the client certificate of docker.tls", function()
    local name = "tls-a-" .. unistd.getpid()
    run_container(name)
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q, tls = { ca = %q, cert = %q, key = %q } },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.1 },
}]], "tcp://" .. addr, certs .. "/ca.pem", certs .. "/cert.pem", certs .. "/key.pem", name) }
    local recs = e:wait_records(function(r) return #lines_of(r, name) >= 3 end, 60)
    assert.same({ name .. " 1", name .. " 2", name .. " 3" }, lines_of(recs, name))
    assert.matches("connected to the Docker daemon at tcp://" .. addr, e:stderr_text(), 1, true)
    assert.equal(0, e:stop())
    docker("rm -f " .. name)
  end)

  it("follows the daemon through $DOCKER_HOST, $DOCKER_TLS_VERIFY and $DOCKER_CERT_PATH", function()
    local name = "tls-b-" .. unistd.getpid()
    run_container(name)
    e = engine.start { pipeline = string.format([[
return {
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.1 },
}]], name), env = { DOCKER_HOST = "tcp://" .. addr, DOCKER_TLS_VERIFY = "1", DOCKER_CERT_PATH = certs } }
    local recs = e:wait_records(function(r) return #lines_of(r, name) >= 3 end, 60)
    assert.same({ name .. " 1", name .. " 2", name .. " 3" }, lines_of(recs, name))
    assert.equal(0, e:stop())
    docker("rm -f " .. name)
  end)

  it("says clearly that the daemon's certificate is not trusted by a wrong CA, and exits 1", function()
    local code, _, err = engine.run_once { command = "run", timeout = 60, pipeline = string.format([[
return {
  docker = { host = %q, tls = { ca = %q, cert = %q, key = %q } },
}]], "tcp://" .. addr, certs .. "/wrong-ca.pem", certs .. "/cert.pem", certs .. "/key.pem") }
    assert.equal(1, code, err)
    assert.matches("TLS: the server's certificate is not trusted by the CA certificate " ..
                   certs .. "/wrong-ca.pem", err, 1, true)
  end)

  it("says which TLS file it cannot read, and exits 1", function()
    local code, _, err = engine.run_once { command = "run", timeout = 60, pipeline = string.format([[
return {
  docker = { host = %q, tls = { ca = %q } },
}]], "tcp://" .. addr, certs .. "/missing.pem") }
    assert.equal(1, code, err)
    assert.matches("cannot read the TLS file " .. certs .. "/missing.pem: No such file or directory",
                   err, 1, true)
  end)
end)
