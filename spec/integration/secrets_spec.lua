-- Secrets in a pipeline's settings: a header value, URL credentials and the
-- environment variables an output reads (auth) never appear in a message,
-- and a value holding a line break (which would end its header and start
-- another one on the wire) is refused by `engine check` and `engine run`
-- with an error that names it without showing it.
local engine = require "spec.support.engine"

local SECRET = "s3cr3t-9f1c"

local function pipeline(output)
  return string.format([[
return {
  outputs = { { type = "http", name = "web", %s } },
}
]], output)
end

-- Runs `engine <command>` on the output's settings with env; returns the
-- exit code and everything it printed.
local function run(command, output, env)
  env = env or {}
  if env.DOCKER_HOST == nil then env.DOCKER_HOST = "unix:///nonexistent/docker.sock" end
  local code, out, err = engine.run_once { command = command, pipeline = pipeline(output), env = env }
  return code, out .. err
end

local function refused(text, code, what)
  assert.equal(2, code, text) -- the pipeline is refused
  assert.matches(what, text, 1, true)
  assert.is_nil(text:find(SECRET, 1, true), "the secret is printed:\n" .. text)
  assert.is_nil(text:find("X-Injected", 1, true), "the injected header is printed:\n" .. text)
end

describe("secrets in settings #sanitize", function()
  for _, command in ipairs { "check", "run" } do
    it("engine " .. command .. " refuses a header value with a line break, without showing it", function()
      for _, v in ipairs { "Bearer " .. SECRET .. "\n", "Bearer " .. SECRET .. "\r\nX-Injected: yes" } do
        local code, text = run(command, string.format([[url = "http://127.0.0.1:1/x",
          headers = { Authorization = %q }]], v))
        refused(text, code, 'headers.Authorization')
        assert.matches("line break", text, 1, true)
      end
    end)

    it("engine " .. command .. " refuses auth environment values with CR or LF, without showing them", function()
      local code, text = run(command, [[url = "http://127.0.0.1:1/x", auth = { bearer_env = "API_TOKEN" }]],
                             { API_TOKEN = SECRET .. "\r\nX-Injected: yes" })
      refused(text, code, "API_TOKEN")
      assert.matches("line break", text, 1, true)
      code, text = run(command, [[url = "http://127.0.0.1:1/x",
                                  auth = { user_env = "API_USER", password_env = "API_PASSWORD" }]],
                       { API_USER = "bob", API_PASSWORD = SECRET .. "\n" })
      refused(text, code, "API_PASSWORD")
      code, text = run(command, [[url = "http://127.0.0.1:1/x",
                                  auth = { user_env = "API_USER", password_env = "API_PASSWORD" }]],
                       { API_USER = "bob\rX-Injected: yes", API_PASSWORD = SECRET })
      refused(text, code, "API_USER")
    end)
  end

  it("never shows a header's value or a URL's credentials in a validation error", function()
    local code, text = run("check", string.format([[url = "http://127.0.0.1:1/x",
      headers = { ["Bad Name"] = %q }]], SECRET))
    refused(text, code, "headers")
    code, text = run("check", string.format([[url = "http://127.0.0.1:1/x",
      headers = { Authorization = { %q } }]], SECRET))
    refused(text, code, "headers.Authorization")
    code, text = run("check", string.format([[url = "ftp://admin:%s@127.0.0.1/x"]], SECRET))
    refused(text, code, "must be an http:// or https:// address")
    code, text = run("check", string.format([[url = "admin:%s@127.0.0.1/x"]], SECRET))
    refused(text, code, "must be an http:// or https:// address")
  end)

  it("accepts clean values", function()
    local code, text = run("check", [[url = "http://127.0.0.1:1/x", headers = { ["X-Team"] = "a b" },
                                     auth = { bearer_env = "API_TOKEN" }]], { API_TOKEN = SECRET })
    assert.equal(0, code, text)
    assert.is_nil(text:find(SECRET, 1, true), text)
  end)
end)
