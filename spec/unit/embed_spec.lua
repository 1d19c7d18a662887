-- embed_spec.lua - the engine as a library, as a host program sees it:
-- `make install` into a temporary DESTDIR, then examples/embed/embed.c
-- built with `pkg-config engine` only (nothing from the source tree) and
-- run against the fake Docker server; the installed libengine.so exports
-- only engine_*.
local proc = require("spec.support.proc")
local fake = require("spec.support.fake")
local cjson = require("cjson")
local ffi = require("ffi")

local PREFIX = "/usr/local"

describe("the installed library", function()
  local dest, lib, pc
  setup(function()
    dest = os.tmpname()
    os.remove(dest)
    -- The plain build (build/): a host program is not built with sanitizers.
    local ok, out = proc.sh("make --no-print-directory install B=build PREFIX=" .. PREFIX ..
                            " DESTDIR=" .. proc.quote(dest), 600)
    assert(ok, out)
    lib = dest .. PREFIX .. "/lib"
    -- The .pc file names its prefix; the temporary install is under DESTDIR.
    pc = "PKG_CONFIG_PATH=" .. proc.quote(lib .. "/pkgconfig") ..
         " pkg-config --define-variable=prefix=" .. proc.quote(dest .. PREFIX)
  end)
  teardown(function() if dest then os.execute("rm -rf " .. proc.quote(dest)) end end)

  it("installs the header, libengine.so, libengine.a and engine.pc", function()
    for _, f in ipairs({ "/include/engine/engine.h", "/lib/libengine.so", "/lib/libengine.a",
                         "/lib/pkgconfig/engine.pc", "/share/engine/lua/engine/pipeline.lua" }) do
      assert.truthy(proc.read(dest .. PREFIX .. f), f)
    end
    local ok, out = proc.sh(pc .. " --modversion engine")
    assert.is_true(ok, out)
    assert.truthy(out:match("^%d+%.%d+%.%d+"), out)
  end)

  it("exports only engine_* functions", function()
    local ok, out = proc.sh("nm -D --defined-only " .. proc.quote(lib .. "/libengine.so"))
    assert.is_true(ok, out)
    local names = {}
    for name in out:gmatch("%S+ %u (%S+)") do names[#names + 1] = name end
    assert.is_true(#names >= 10, out)
    for _, name in ipairs(names) do assert.truthy(name:match("^engine_"), name) end
    -- The generic internal names a host program could define too are gone.
    assert.falsy(out:find(" log_msg\n", 1, true))
    assert.falsy(out:find(" strbuf_add\n", 1, true))
  end)

  it("engine_load_string loads a pipeline and reports errors as name:line", function()
    local C = ffi.load(lib .. "/libengine.so")
    if not pcall(ffi.typeof, "struct embed_spec_engine") then
      ffi.cdef([[
struct embed_spec_engine;
struct embed_spec_engine *engine_new(void);
int engine_load_string(struct embed_spec_engine *e, const char *name, const char *source,
                       const char *lua_dir, char *err, size_t errlen);
void engine_free(struct embed_spec_engine *e);
]])
    end
    local luadir = dest .. PREFIX .. "/share/engine/lua"
    local err = ffi.new("char[1024]")
    local e = C.engine_new()
    assert.equal(-1, C.engine_load_string(e, "mine.lua", "return {\n  outputs = {\n", luadir, err, 1024))
    assert.truthy(ffi.string(err):match("^mine%.lua:%d+:"), ffi.string(err))
    C.engine_free(e)
    e = C.engine_new()
    assert.equal(-1, C.engine_load_string(e, "typo.lua", "return { outputz = {} }", luadir, err, 1024))
    assert.truthy(ffi.string(err):find("typo.lua", 1, true), ffi.string(err))
    C.engine_free(e)
    e = C.engine_new()
    local ok = C.engine_load_string(e, nil,
      'return { outputs = { { type = "null" } } }', luadir, err, 1024)
    assert.equal(0, ok, ffi.string(err))
    C.engine_free(e)
  end)

  it("builds the embedding example with pkg-config only, and it follows containers", function()
    local bin = dest .. "/embed"
    local ok, out = proc.sh("cc -Wall -Werror -o " .. proc.quote(bin) ..
                            " examples/embed/embed.c $(" .. pc .. " --cflags --libs engine)")
    assert.is_true(ok, out)
    -- Linked against the installed library, not the build tree's.
    ok, out = proc.sh("LD_LIBRARY_PATH=" .. proc.quote(lib) .. " ldd " .. proc.quote(bin))
    assert.is_true(ok, out)
    assert.truthy(out:find(lib .. "/libengine.so.0", 1, true), out)

    local srv = fake.start({ "--containers", "2", "--preload", "5", "--rate", "0" })
    local p = proc.spawn({ argv = { bin }, env = {
      LD_LIBRARY_PATH = lib, LD_PRELOAD = false, DOCKER_HOST = srv.host,
      ENGINE_LUA_DIR = dest .. PREFIX .. "/share/engine/lua" } })
    local function records()
      local r = {}
      for line in p:stdout_text():gmatch("[^\n]*\n") do r[#r + 1] = cjson.decode(line) end
      return r
    end
    local finished = pcall(proc.wait_for, function() return #records() >= 10 or not p:running() end,
                           60, "10 records")
    p:signal("INT")
    local code = p:wait(30)
    local err = p:stderr_text()
    local got = records()
    p:cleanup()
    srv:stop()
    assert.is_true(finished, err)
    assert.equal(0, code, err)
    local lines = {}
    for _, r in ipairs(got) do
      assert.equal("embed", r.via)
      lines[#lines + 1] = r.line
    end
    table.sort(lines)
    assert.same({ "c0 1", "c0 2", "c0 3", "c0 4", "c0 5", "c1 1", "c1 2", "c1 3", "c1 4", "c1 5" }, lines)
    assert.truthy(err:find("10 records in, 10 out, 2 readers started", 1, true), err)
  end)
end)
