-- scripts/dev/lint-includes.lua: the include structure check of `make lint`.
local proc = require "spec.support.proc"

local function tree(files)
  local dir = select(2, proc.sh("mktemp -d /tmp/lintinc.XXXXXX")):gsub("%s+$", "")
  for name, text in pairs(files) do
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
  end
  local ok, out = proc.sh("luajit scripts/dev/lint-includes.lua " .. proc.quote(dir) .. " 2>&1")
  proc.sh("rm -rf " .. proc.quote(dir))
  return ok, out
end

describe("lint-includes", function()
  it("passes the engine's own tree", function()
    local ok, out = proc.sh("luajit scripts/dev/lint-includes.lua engine 2>&1")
    assert.is_true(ok, out)
  end)

  it("finds two modules that depend on each other", function()
    local ok, out = tree {
      ["a.h"] = "int a_get(void);\n", ["b.h"] = "int b_get(void);\n",
      ["a.c"] = '#include "a.h"\n#include "b.h"\nint a_get(void) { return b_get(); }\n',
      ["b.c"] = '#include "b.h"\n#include "a.h"\nint b_get(void) { return a_get(); }\n',
    }
    assert.is_false(ok)
    assert.matches("modules depend on each other in a circle: a, b", out, 1, true)
  end)

  it("lets a family behind one private header call each other", function()
    local ok, out = tree {
      ["f.h"] = "int f_run(void);\n", ["f_internal.h"] = "int f_part(void);\n",
      ["f.c"] = '#include "f.h"\n#include "f_internal.h"\nint f_run(void) { return f_part(); }\n',
      ["f_part.c"] = '#include "f.h"\n#include "f_internal.h"\nint f_part(void) { return 1; }\n',
    }
    assert.is_true(ok, out)
  end)

  it("finds a header included for nothing, and takes a struct member as a use", function()
    local ok, out = tree {
      ["s.h"] = "typedef struct s { int width; } s_t;\nint s_make(void);\n",
      ["u.h"] = "int u_get(void);\n",
      ["u.c"] = '#include "u.h"\n#include "s.h"\nint u_get(void) { return 0; }\n',
      ["v.h"] = "int v_get(void *p);\n",
      ["v.c"] = '#include "v.h"\n#include "s.h"\nint v_get(void *p) { return ((struct x *)p)->width; }\n',
    }
    assert.is_false(ok)
    assert.matches("u.c:2: s.h is included but nothing it declares is used", out, 1, true)
    assert.is_nil(out:find("v.c", 1, true))
  end)
end)
