-- spec/support/ffi.lua - LuaJIT FFI bindings to build/libengine-test.so for the
-- unit specs: the declarations of timestamp.h, decode.h, cursor.h and
-- select.h, and helpers around them.
--
-- Load it as require("spec.support.ffi"), as every spec helper (from the
-- repository's root, where busted runs). The library is
-- ENGINE_LIB, or build/libengine-test.so: the library built with every
-- symbol visible (libengine.so exports only engine_*). An ENGINE_LIB naming
-- a build folder's libengine.so means that folder's libengine-test.so.
local ffi = require("ffi")

local M = {}

-- ffi.cdef refuses redefinitions, and busted may load this module again for
-- every spec file.
if not pcall(ffi.typeof, "decoder_t") then
  ffi.cdef([[
/* timestamp.h */
int ts_parse(const char *s, size_t len, int64_t *ns, size_t *used);
void ts_format(int64_t ns, char out[31]);
void ts_format_since(int64_t ns, char out[32]);
int64_t ts_now(void);

/* decode.h */
typedef struct decode_line {
  int stream;
  int64_t ts;
  const char *data;
  size_t len;
  unsigned flags;
} decode_line_t;
typedef void (*decode_line_fn)(void *ud, const decode_line_t *line);
typedef struct decode_buf {
  char *data;
  size_t len, cap;
} decode_buf_t;
typedef struct decode_partial {
  decode_buf_t buf;
  int64_t ts;
  int active;
} decode_partial_t;
typedef struct decoder {
  int raw;
  size_t frame_max, line_max;
  decode_line_fn on_line;
  void *ud;
  unsigned char hdr[8];
  size_t hdr_len;
  int frame_type;
  size_t frame_left;
  decode_buf_t frame;
  decode_partial_t part[3];
  char error[128];
  int raw_cont;
  decode_buf_t probe;
  int untimed;
  int64_t now;
} decoder_t;
void decoder_init(decoder_t *d, int raw, size_t frame_max, size_t line_max,
                  decode_line_fn on_line, void *ud);
int decoder_feed(decoder_t *d, const char *buf, size_t len);
void decoder_finish(decoder_t *d);
void decoder_reset(decoder_t *d);
void decoder_untimed(decoder_t *d);
int64_t decoder_pending_ts(const decoder_t *d);
void decoder_free(decoder_t *d);

/* cursor.h */
typedef struct cursor_key {
  int64_t ts;
  uint64_t hash;
  uint32_t len;
  uint8_t stream;
} cursor_key_t;
typedef struct cursor cursor_t;
cursor_t *cursor_new(int64_t margin_ns, size_t max_keys);
void cursor_free(cursor_t *c);
cursor_key_t cursor_key(int64_t ts, int stream, const char *data, size_t len);
int64_t cursor_since(const cursor_t *c);
void cursor_begin_replay(cursor_t *c);
int cursor_seen(cursor_t *c, const cursor_key_t *k, unsigned flags);
uint64_t cursor_repeated(const cursor_t *c);
enum { CURSOR_NEW = 0, CURSOR_REPLAYED = 1, CURSOR_REPEATED = 2 };
typedef struct cursor_state {
  int any;
  int64_t newest;
  int64_t floor;
  int evicted;
  int64_t evicted_max;
  size_t n_keys;
} cursor_state_t;
void cursor_get_state(const cursor_t *c, cursor_state_t *s);
size_t cursor_keys(const cursor_t *c, cursor_key_t *out, size_t max);
cursor_t *cursor_restore(int64_t margin_ns, size_t max_keys, const cursor_state_t *s,
                         const cursor_key_t *keys, size_t n);
int cursor_deliver(cursor_t *c, const cursor_key_t *k, int64_t floor_ts);
int64_t cursor_newest(const cursor_t *c);
size_t cursor_window(const cursor_t *c);

/* occurrence.h */
typedef struct occurrence occurrence_t;
occurrence_t *occurrence_new(void);
void occurrence_free(occurrence_t *o);
void occurrence_clear(occurrence_t *o);
int occurrence_count(occurrence_t *o, const cursor_key_t *k, uint32_t *n);
int occurrence_seen(occurrence_t *o, cursor_t *c, const cursor_key_t *k, unsigned flags,
                    uint32_t *n, int *oom);

/* checkpoint.h (parsing and writing the file's text only) */
typedef struct checkpoint checkpoint_t;
checkpoint_t *checkpoint_parse(const char *text, size_t len, int64_t margin_ns);
char *checkpoint_text(const checkpoint_t *cp, size_t *len);
cursor_t *checkpoint_resume(checkpoint_t *cp, const char *id);
void checkpoint_free(checkpoint_t *cp);

/* select.h */
enum select_kind { SELECT_NAME, SELECT_ID, SELECT_LABEL, SELECT_IMAGE };
typedef struct select_rule {
  int kind;
  char *pattern;
} select_rule_t;
typedef struct selection {
  select_rule_t *include, *exclude;
  size_t n_include, n_exclude;
} selection_t;
int selection_add(selection_t *s, int exclude, int kind, const char *pattern);
int selection_match(const selection_t *s, const char *id, const char *name,
                    const char *image, const char *const *labels, size_t n);
void selection_free(selection_t *s);
]])
end

-- Input is copied into malloc'd buffers of the exact size, so that
-- AddressSanitizer sees a read past the end of a slice.
if not pcall(function() return ffi.C.malloc end) then
  ffi.cdef("void *malloc(size_t size); void free(void *p);")
end

-- A malloc'd copy of s (freed by the GC), or nil for "".
local function exact_copy(s)
  if #s == 0 then return nil end
  local p = ffi.gc(ffi.cast("char *", ffi.C.malloc(#s)), ffi.C.free)
  ffi.copy(p, s, #s)
  return p
end
M.exact_copy = exact_copy

local lib = (os.getenv("ENGINE_LIB") or "build/libengine-test.so"):gsub("libengine%.so$", "libengine-test.so")
local C = ffi.load(lib)
M.C = C

-- The declarations above are copies of the headers': a struct whose size
-- differs from the C one's fails here, loudly, rather than as a crash.
ffi.cdef("size_t engine_test_sizeof(const char *name);")
for _, name in ipairs { "decode_line_t", "decode_buf_t", "decode_partial_t", "decoder_t",
                        "cursor_key_t", "cursor_state_t", "select_rule_t", "selection_t" } do
  local c_size = tonumber(C.engine_test_sizeof(name))
  if c_size ~= ffi.sizeof(name) then
    error(string.format("spec/support/ffi.lua: %s is %d bytes here but %d in the C headers: "
                        .. "copy the header's declaration again", name, ffi.sizeof(name), c_size), 0)
  end
end

-- Constants from the headers' #defines.
M.TS_LEN = 30
M.STDOUT, M.STDERR, M.SYSERR = 1, 2, 3
M.TRUNCATED, M.UNTERMINATED = 0x1, 0x2
M.INT64_MAX = 0x7fffffffffffffffLL
M.CURSOR_MAX_KEYS_DEFAULT = 65536
M.CURSOR_PIECE = 1 -- cursor.h

---------------------------------------------------------------- timestamps

-- Returns ns (int64 cdata) and the bytes used, or nil.
function M.ts_parse(s)
  local ns, used = ffi.new("int64_t[1]"), ffi.new("size_t[1]")
  if C.ts_parse(s, #s, ns, used) ~= 0 then return nil end
  return ns[0], tonumber(used[0])
end

function M.ts_format(ns)
  local out = ffi.new("char[31]")
  C.ts_format(ns, out)
  return ffi.string(out)
end

function M.ts_format_since(ns)
  local out = ffi.new("char[32]")
  C.ts_format_since(ns, out)
  return ffi.string(out)
end

------------------------------------------------------------------ decoder

-- One C callback for the whole module; `sink` is the table lines go to.
local sink
local callback

local function on_line(_, line)
  sink[#sink + 1] = {
    stream = line.stream,
    ts = line.ts,
    line = ffi.string(line.data, line.len),
    flags = line.flags,
  }
end

local function get_callback()
  if not callback then callback = ffi.cast("decode_line_fn", on_line) end
  return callback
end

-- Frees the C callback (recreated on next use). Call from teardown().
function M.release()
  if callback then
    callback:free()
    callback = nil
  end
end

-- A decoder wrapper: d:feed(s) returns rc; d.lines collects the output.
local Decoder = {}
Decoder.__index = Decoder

-- opts: raw (bool), frame_max, line_max (0: default), untimed (bool: an
-- attach stream; set d.cd.now before each feed).
function M.decoder(opts)
  opts = opts or {}
  local d = setmetatable({ lines = {} }, Decoder)
  d.cd = ffi.gc(ffi.new("decoder_t"), C.decoder_free)
  C.decoder_init(d.cd, opts.raw and 1 or 0, opts.frame_max or 0,
                 opts.line_max or 0, get_callback(), nil)
  if opts.untimed then C.decoder_untimed(d.cd) end
  return d
end

local function with_sink(d, fn, ...)
  local saved = sink
  sink = d.lines
  local rc = fn(...)
  sink = saved
  return rc
end

function Decoder:feed(s)
  local p = exact_copy(s)
  local rc = with_sink(self, C.decoder_feed, self.cd, p, #s)
  ffi.gc(p, nil)
  if p ~= nil then ffi.C.free(p) end
  return rc
end

function Decoder:finish()
  with_sink(self, C.decoder_finish, self.cd)
end

function Decoder:error()
  return ffi.string(self.cd.error)
end

function Decoder:pending_ts()
  return C.decoder_pending_ts(self.cd)
end

-- Calling back into Lua from a C function must not happen inside a trace.
jit.off(Decoder.feed)
jit.off(Decoder.finish)
jit.off(with_sink)

-- Cuts s into slices: `slices` is a number (every slice that long), a list
-- of slice lengths (the rest is one last slice), or nil (one slice).
local function cut(s, slices)
  if slices == nil then return { s } end
  local out, pos = {}, 1
  if type(slices) == "number" then
    while pos <= #s do
      out[#out + 1] = s:sub(pos, pos + slices - 1)
      pos = pos + slices
    end
    return out
  end
  for _, n in ipairs(slices) do
    out[#out + 1] = s:sub(pos, pos + n - 1)
    pos = pos + n
  end
  if pos <= #s then out[#out + 1] = s:sub(pos) end
  return out
end
M.cut = cut

-- Decodes input fed in the given slices. opts as for M.decoder, plus
-- slices (see cut) and finish (call decoder_finish at the end). Returns
-- the lines ({stream=, ts=, line=, flags=}), the last rc and the error.
function M.decode(input, opts)
  opts = opts or {}
  local d = M.decoder(opts)
  local rc = 0
  for _, piece in ipairs(cut(input, opts.slices)) do
    rc = d:feed(piece)
    if rc ~= 0 then break end
  end
  if rc == 0 and opts.finish then d:finish() end
  return d.lines, rc, d:error()
end

-- A multiplexed frame: type (0-3) and payload.
function M.frame(stype, payload)
  local n = #payload
  return string.char(stype, 0, 0, 0, bit.band(bit.rshift(n, 24), 255),
                     bit.band(bit.rshift(n, 16), 255),
                     bit.band(bit.rshift(n, 8), 255), bit.band(n, 255)) .. payload
end

------------------------------------------------------------------- cursor

-- A new cursor, freed by the GC.
function M.cursor(margin_ns, max_keys)
  local c = C.cursor_new(margin_ns or 1000000000LL, max_keys or 0)
  assert(c ~= nil, "cursor_new")
  return ffi.gc(c, C.cursor_free)
end

function M.occurrence()
  local o = C.occurrence_new()
  assert(o ~= nil, "occurrence_new")
  return ffi.gc(o, C.occurrence_free)
end

function M.key(ts, stream, line)
  return C.cursor_key(ts, stream, line, #line)
end

------------------------------------------------------------------- select

-- A selection built from rules { {exclude=bool, kind="name"|..., pattern=} }.
local kinds = { name = C.SELECT_NAME, id = C.SELECT_ID, label = C.SELECT_LABEL,
                image = C.SELECT_IMAGE }

function M.selection(rules)
  local s = ffi.gc(ffi.new("selection_t"), C.selection_free)
  for _, r in ipairs(rules) do
    assert(C.selection_add(s, r.exclude and 1 or 0, kinds[r.kind], r.pattern) == 0)
  end
  return s
end

-- container: {id=, name=, image=, labels={"k=v", ...}}. Returns a boolean.
function M.match(s, container)
  local labels = container.labels or {}
  local arr = ffi.new("const char *[?]", #labels + 1)
  for i, l in ipairs(labels) do arr[i - 1] = l end
  return C.selection_match(s, container.id, container.name, container.image,
                           arr, #labels) == 1
end

return M
