-- The nats output's subject template (engine/output_nats.h): parsing, the
-- token a field's value becomes, and the same template rules in
-- `engine check` (lua/engine/pipeline.lua).
package.path = "spec/?.lua;" .. package.path
local E = require("support.ffi")
local ffi = require("ffi")
local C = E.C

if not pcall(ffi.typeof, "nats_template_t") then
  ffi.cdef([[
typedef struct nats_part { int field; char text[128]; } nats_part_t;
typedef struct nats_template { int n; nats_part_t parts[16]; } nats_template_t;
int nats_template_parse(nats_template_t *t, const char *text, char *err, size_t n);
size_t nats_token(const char *in, size_t len, char *out);
]])
end

local function token(s)
  local out = ffi.new("char[?]", #s + 1)
  local n = C.nats_token(s, #s, out)
  return ffi.string(out, n)
end

local function parse(text)
  local t = ffi.new("nats_template_t")
  local err = ffi.new("char[200]")
  if C.nats_template_parse(t, text, err, 200) ~= 0 then return nil, ffi.string(err) end
  local parts = {}
  for i = 0, t.n - 1 do
    parts[#parts + 1] = (t.parts[i].field == 1 and "{" .. ffi.string(t.parts[i].text) .. "}")
      or ffi.string(t.parts[i].text)
  end
  return parts
end

describe("the nats subject template", function()
  it("makes a field's value one token: spaces, controls, dots, * and > become _", function()
    assert.equal("web-1", token("web-1"))
    assert.equal("a_b_c_d_e_f", token("a b.c*d>e\tf"))
    assert.equal("_", token(""))
    assert.equal("caf\195\169_1", token("caf\195\169 1"))
    assert.equal("x_y", token("x\0y"))
  end)

  it("splits literal text and {fields}", function()
    assert.same({ "logs.", "{name}", ".", "{stream}" }, parse("logs.{name}.{stream}"))
    assert.same({ "logs.all" }, parse("logs.all"))
    assert.same({ "{a}", "-", "{b_2}" }, parse("{a}-{b_2}"))
  end)

  it("refuses what cannot be a subject", function()
    local cases = {
      [""] = "is empty",
      ["logs.{name"] = "has an unclosed or empty {field}",
      ["logs.{}"] = "has an unclosed or empty {field}",
      ["logs.{na-me}"] = "names a field with a character other than letters, digits and _",
      ["logs.*"] = "holds '*' outside a {field}: a subject takes no spaces, *, > or }",
      ["logs.>"] = "holds '>' outside a {field}: a subject takes no spaces, *, > or }",
      ["logs x"] = "holds ' ' outside a {field}: a subject takes no spaces, *, > or }",
      ["logs.}"] = "holds '}' outside a {field}: a subject takes no spaces, *, > or }",
      [".logs"] = "has an empty token (a leading or trailing dot, or \"..\")",
      ["logs..{name}"] = "has an empty token (a leading or trailing dot, or \"..\")",
      ["logs.{name}."] = "has an empty token (a leading or trailing dot, or \"..\")",
    }
    for text, want in pairs(cases) do
      local parts, err = parse(text)
      assert.is_nil(parts, text)
      assert.equal(want, err, text)
    end
  end)

  it("is checked the same way by engine check", function()
    package.path = "lua/?.lua;" .. package.path
    local pipeline = require("engine.pipeline")
    local function check(subject)
      return pipeline.validate({
        outputs = { { type = "nats", url = "nats://127.0.0.1:4222", subject = subject } },
      })
    end
    assert.is_truthy(check("logs.{name}.{stream}"))
    for _, bad in ipairs { "", "logs.{name", "logs.{}", "logs.*", "logs x", "logs..a", "{a-b}" } do
      local ok, err = pcall(check, bad)
      assert.is_false(ok, bad)
      assert.matches("outputs%[1%]%.subject", tostring(err), 1, false)
    end
  end)
end)
