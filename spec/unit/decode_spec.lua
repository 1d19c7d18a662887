local E = require("spec.support.ffi")

local frame = E.frame
local CHUNK = 16384 -- Docker's partial message size

local TS = "2024-01-01T00:00:00.000000001Z"
local TS_NS = 1704067200000000001LL
local TS2 = "2024-01-01T00:00:01.5Z"
local TS2_NS = 1704067201500000000LL

-- Docker's split of one line: chunks of CHUNK content bytes while that
-- many are left, then the rest with the '\n'.
local function docker_chunks(content)
  local out, pos = {}, 1
  while #content - pos + 1 >= CHUNK do
    out[#out + 1] = content:sub(pos, pos + CHUNK - 1)
    pos = pos + CHUNK
  end
  out[#out + 1] = content:sub(pos) .. "\n"
  return out
end

-- A line as multiplexed frames, each chunk with its own "<ts> ".
local function mux_line(stype, ts, text)
  local out = {}
  for _, c in ipairs(docker_chunks(text)) do out[#out + 1] = frame(stype, ts .. " " .. c) end
  return table.concat(out)
end

-- A line as a TTY raw stream writes it: content ends in "\r", every chunk
-- has its own "<ts> ", and no frame separates them.
local function raw_line(ts, text)
  local out = {}
  for _, c in ipairs(docker_chunks(text .. "\r")) do out[#out + 1] = ts .. " " .. c end
  return table.concat(out)
end

local function texts(lines)
  local out = {}
  for i, l in ipairs(lines) do out[i] = l.line end
  return out
end

local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c, len = s:byte(i), nil
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c < 0xE0 then len = 2
    elseif c >= 0xE0 and c < 0xF0 then len = 3
    elseif c >= 0xF0 and c < 0xF5 then len = 4
    else return false end
    if i + len - 1 > n then return false end
    for k = i + 1, i + len - 1 do
      local b = s:byte(k)
      if b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

-- Checks that pieces are a line cut at UTF-8 boundaries into TRUNCATED
-- pieces of at most line_max bytes, at least one cut backed up.
local function assert_pieces(lines, text, line_max, ts)
  assert.is_true(#lines > 1)
  local backed_up = false
  for i, l in ipairs(lines) do
    assert.equals(E.TRUNCATED, l.flags)
    assert.equals(ts, l.ts)
    assert.is_true(#l.line <= line_max)
    assert.is_true(valid_utf8(l.line), "piece " .. i .. " is not valid UTF-8")
    if i < #lines and #l.line < line_max then backed_up = true end
  end
  assert.is_true(backed_up)
  assert.equals(text, table.concat(texts(lines)))
end

teardown(function() E.release() end)

describe("decoder, multiplexed", function()
  local input = frame(1, TS .. " one\n") .. frame(2, TS2 .. " two\r\n") ..
                frame(1, TS .. " thr") .. frame(1, TS .. " ee\n") ..
                frame(0, TS .. " \n") .. frame(3, "Error grabbing logs: boom\n")
  local want = {
    { stream = E.STDOUT, ts = TS_NS, line = "one", flags = 0 },
    { stream = E.STDERR, ts = TS2_NS, line = "two", flags = 0 },
    { stream = E.STDOUT, ts = TS_NS, line = "three", flags = 0 },
    { stream = E.STDOUT, ts = TS_NS, line = "", flags = 0 },
    { stream = E.SYSERR, ts = 0LL, line = "Error grabbing logs: boom", flags = 0 },
  }

  it("decodes frames of every stream type", function()
    local lines, rc = E.decode(input)
    assert.equals(0, rc)
    assert.same(want, lines)
  end)

  it("gives the same lines when the input is split at any byte offset", function()
    for i = 1, #input - 1 do
      local lines, rc = E.decode(input, { slices = { i } })
      assert.equals(0, rc)
      assert.same(want, lines)
    end
  end)

  it("gives the same lines when fed one byte at a time", function()
    local lines, rc = E.decode(input, { slices = 1 })
    assert.equals(0, rc)
    assert.same(want, lines)
  end)

  it("reports stdin frames (type 0) as stdout", function()
    local lines = E.decode(frame(0, TS .. " in\n"))
    assert.same({ { stream = E.STDOUT, ts = TS_NS, line = "in", flags = 0 } }, lines)
  end)

  it("rejects an unknown frame type", function()
    local lines, rc, err = E.decode(frame(1, TS .. " ok\n") .. frame(4, TS .. " x\n"))
    assert.equals(-1, rc)
    assert.matches("frame type 4", err)
    assert.same({ "ok" }, texts(lines))
  end)

  it("stays failed after an error", function()
    local d = E.decoder()
    assert.equals(-1, d:feed(frame(9, "")))
    assert.equals(-1, d:feed(frame(1, TS .. " ok\n")))
    assert.same({}, d.lines)
  end)

  it("rejects a frame larger than frame_max before reading its payload", function()
    local header = frame(1, TS .. " 0123456789\n"):sub(1, 8)
    local lines, rc, err = E.decode(header, { frame_max = 20 })
    assert.equals(-1, rc)
    assert.matches("frame_max", err)
    assert.same({}, lines)
    -- a size field of 4 GiB - 1 is refused, not allocated
    lines, rc = E.decode("\1\0\0\0\255\255\255\255")
    assert.equals(-1, rc)
  end)

  it("accepts a frame of exactly frame_max bytes", function()
    local payload = TS .. " " .. string.rep("x", 69) .. "\n"
    local lines, rc = E.decode(frame(1, payload), { frame_max = #payload, slices = 7 })
    assert.equals(0, rc)
    assert.same({ string.rep("x", 69) }, texts(lines))
  end)

  it("rejects a frame without a timestamp", function()
    local _, rc, err = E.decode(frame(1, "hello\n"))
    assert.equals(-1, rc)
    assert.matches("timestamp", err)
    _, rc = E.decode(frame(1, TS .. "hello\n"))
    assert.equals(-1, rc)
  end)

  it("ignores empty frames", function()
    local lines, rc = E.decode(frame(1, "") .. frame(1, TS .. " a\n") .. frame(2, ""))
    assert.equals(0, rc)
    assert.same({ "a" }, texts(lines))
  end)

  it("converts Z, +02:00 and -05:30 timestamps to UTC nanoseconds", function()
    local lines = E.decode(frame(1, "2024-01-01T00:00:00.000000001Z a\n") ..
                           frame(1, "2024-01-01T02:00:00.000000002+02:00 b\n") ..
                           frame(2, "2023-12-31T18:30:00.000000003-05:30 c\n"))
    assert.equals(1704067200000000001LL, lines[1].ts)
    assert.equals(1704067200000000002LL, lines[2].ts)
    assert.equals(1704067200000000003LL, lines[3].ts)
  end)

  it("removes a '\\r' before the '\\n' but keeps a lone '\\r'", function()
    local lines = E.decode(frame(1, TS .. " a\r\n") .. frame(1, TS .. " b\rc\n") ..
                           frame(1, TS .. " d\r\r\n") .. frame(1, TS .. " \r\n"))
    assert.same({ "a", "b\rc", "d\r", "" }, texts(lines))
  end)

  it("removes a '\\r' that ends one chunk when the next chunk is the '\\n'", function()
    local lines = E.decode(frame(1, TS .. " a\r") .. frame(1, TS .. " \n") ..
                           frame(1, TS .. " b\r") .. frame(1, TS .. " c\n"))
    assert.same({ "a", "b\rc" }, texts(lines))
  end)

  it("emits empty lines and keeps NUL bytes", function()
    local lines = E.decode(frame(1, TS .. " \n") .. frame(1, TS .. " a\0b\0\n") ..
                           frame(1, TS .. " \0\n"))
    assert.same({ "", "a\0b\0", "\0" }, texts(lines))
  end)

  it("splits a payload holding several lines", function()
    local lines = E.decode(frame(2, TS .. " a\nb\n\nc"), { finish = true })
    assert.same({ "a", "b", "", "c" }, texts(lines))
    assert.equals(E.UNTERMINATED, lines[4].flags)
  end)

  it("joins chunks without '\\n' that share the line's timestamp", function()
    local lines = E.decode(frame(1, TS .. " he") .. frame(1, TS .. " ll") ..
                           frame(1, TS .. " o\n"), { slices = 5 })
    assert.same({ { stream = E.STDOUT, ts = TS_NS, line = "hello", flags = 0 } }, lines)
  end)

  it("joins stdout and stderr chunks separately", function()
    local lines = E.decode(frame(1, TS .. " out-") .. frame(2, TS2 .. " err-") ..
                           frame(1, TS .. " 1\n") .. frame(2, TS2 .. " 2\n"))
    assert.same({
      { stream = E.STDOUT, ts = TS_NS, line = "out-1", flags = 0 },
      { stream = E.STDERR, ts = TS2_NS, line = "err-2", flags = 0 },
    }, lines)
  end)

  -- Docker 20.10's local driver: a 40,000-byte line comes as chunks of
  -- 16,384, 16,384 and 7,232 content bytes, all with the line's timestamp,
  -- and the last one without its '\n'; the next line has its own timestamp.
  it("ends a line whose last chunk has no '\\n' when the next message has another timestamp", function()
    local text = {}
    for i = 1, 5000 do text[i] = string.format("%07d|", i) end
    text = table.concat(text)
    local chunks = docker_chunks(text)
    chunks[#chunks] = chunks[#chunks]:sub(1, -2) -- the local driver's missing '\n'
    local input = {}
    for _, c in ipairs(chunks) do input[#input + 1] = frame(1, TS .. " " .. c) end
    input = table.concat(input) .. frame(1, TS2 .. " next\n")
    for _, slices in ipairs({ false, 16384, 1000, 7 }) do
      local lines, rc = E.decode(input, { slices = slices or nil })
      assert.equals(0, rc)
      assert.equals(2, #lines)
      assert.equals(40000, #lines[1].line)
      assert.is_true(text == lines[1].line)
      assert.equals(TS_NS, lines[1].ts)
      assert.equals(0, lines[1].flags)
      assert.same({ stream = E.STDOUT, ts = TS2_NS, line = "next", flags = 0 }, lines[2])
    end
  end)

  it("ends an unterminated line on a new timestamp per stream, removing a '\\r' before the missing '\\n'", function()
    local lines = E.decode(frame(1, TS .. " out\r") .. frame(2, TS2 .. " err-") ..
                           frame(2, TS2 .. " 1") .. frame(1, TS2 .. " two\n") ..
                           frame(2, TS .. " 2\n"))
    assert.same({
      { stream = E.STDOUT, ts = TS_NS, line = "out", flags = 0 },
      { stream = E.STDOUT, ts = TS2_NS, line = "two", flags = 0 },
      { stream = E.STDERR, ts = TS2_NS, line = "err-1", flags = 0 },
      { stream = E.STDERR, ts = TS_NS, line = "2", flags = 0 },
    }, lines)
  end)

  it("ends an unterminated line longer than line_max on a new timestamp, flagged TRUNCATED", function()
    local lines = E.decode(frame(1, TS .. " " .. string.rep("x", 25)) .. frame(1, TS2 .. " y\n"),
                           { line_max = 10 })
    assert.same({ "xxxxxxxxxx", "xxxxxxxxxx", "xxxxx", "y" }, texts(lines))
    assert.same({ E.TRUNCATED, E.TRUNCATED, E.TRUNCATED, 0 },
                { lines[1].flags, lines[2].flags, lines[3].flags, lines[4].flags })
  end)

  it("joins a 100 KiB line sent as 16 KiB chunks", function()
    local text = {}
    for i = 1, 100 * 1024 / 8 do text[i] = string.format("%07d,", i) end
    text = table.concat(text)
    local input = mux_line(1, TS, text) .. frame(2, TS2 .. " after\n")
    for _, slices in ipairs({ false, 16384, 1000, 7 }) do
      local lines, rc = E.decode(input, { slices = slices or nil })
      assert.equals(0, rc)
      assert.equals(2, #lines)
      assert.equals(#text, #lines[1].line)
      assert.is_true(text == lines[1].line)
      assert.equals(TS_NS, lines[1].ts)
      assert.equals(0, lines[1].flags)
      assert.equals("after", lines[2].line)
    end
  end)

  it("joins a multibyte character split across the 16 KiB chunk boundary", function()
    local text = string.rep("a", CHUNK - 1) .. "€" .. string.rep("b", 10)
    local input = mux_line(1, TS, text)
    assert.equals("\226", input:sub(8 + #TS + 1 + CHUNK, 8 + #TS + 1 + CHUNK))
    local lines = E.decode(input, { slices = 4096 })
    assert.equals(1, #lines)
    assert.is_true(text == lines[1].line)
  end)

  it("cuts a line longer than line_max into TRUNCATED pieces of valid UTF-8", function()
    local text = string.rep("é€😀", 200) -- 9 bytes a round
    -- in one frame (emitted from the frame), and as chunks (joined)
    local inputs = {
      frame(1, TS .. " " .. text .. "\n"),
      frame(1, TS .. " " .. text:sub(1, 333)) .. frame(1, TS .. " " .. text:sub(334) .. "\n"),
    }
    for _, input in ipairs(inputs) do
      for _, slices in ipairs({ false, 1, 50 }) do
        local lines, rc = E.decode(input, { line_max = 100, slices = slices or nil })
        assert.equals(0, rc)
        assert_pieces(lines, text, 100, TS_NS)
      end
    end
  end)

  it("cuts a long multiplexed line spanning Docker chunks into valid UTF-8 pieces", function()
    local text = "x" .. string.rep("é€😀", 5000) -- 45001 bytes
    local lines, rc = E.decode(mux_line(2, TS, text), { line_max = 1000, slices = 3000 })
    assert.equals(0, rc)
    assert_pieces(lines, text, 1000, TS_NS)
  end)

  it("does not cut a line of exactly line_max bytes, even with a held-back '\\r'", function()
    local lines = E.decode(frame(1, TS .. " " .. string.rep("z", 64) .. "\r\n") ..
                           frame(1, TS .. " " .. string.rep("y", 63)) ..
                           frame(1, TS .. " y\r") .. frame(1, TS .. " \n"),
                           { line_max = 64 })
    assert.same({
      { stream = E.STDOUT, ts = TS_NS, line = string.rep("z", 64), flags = 0 },
      { stream = E.STDOUT, ts = TS_NS, line = string.rep("y", 64), flags = 0 },
    }, lines)
  end)

  it("flags every piece of a line just over line_max", function()
    local lines = E.decode(frame(1, TS .. " abcde") .. frame(1, TS .. " f\n"), { line_max = 5 })
    assert.same({
      { stream = E.STDOUT, ts = TS_NS, line = "abcde", flags = E.TRUNCATED },
      { stream = E.STDOUT, ts = TS_NS, line = "f", flags = E.TRUNCATED },
    }, lines)
  end)

  it("keeps its buffers within frame_max and line_max", function()
    local d = E.decoder({ frame_max = 40000, line_max = 1000 })
    local text = string.rep("0123456789", 5000)
    for _, piece in ipairs(E.cut(mux_line(1, TS, text), 999)) do assert.equals(0, d:feed(piece)) end
    assert.is_true(tonumber(d.cd.frame.cap) <= 40000)
    assert.is_true(tonumber(d.cd.part[0].buf.cap) <= 1001)
    assert.equals(text, table.concat(texts(d.lines)))
  end)

  it("emits a systemerr frame as a SYSERR line without timestamp", function()
    local lines, rc = E.decode(frame(3, "Error grabbing logs: invalid character '\\x00'\n"))
    assert.equals(0, rc)
    assert.same({ { stream = E.SYSERR, ts = 0LL,
                    line = "Error grabbing logs: invalid character '\\x00'", flags = 0 } }, lines)
  end)

  it("flushes unterminated lines on decoder_finish", function()
    local d = E.decoder()
    assert.equals(0, d:feed(frame(1, TS .. " done\n") .. frame(2, TS2 .. " tail-") ..
                            frame(2, TS2 .. " end") .. frame(1, TS .. " out")))
    assert.same({ "done" }, texts(d.lines))
    assert.equals(0, d:feed(frame(1, TS):sub(1, 11))) -- an incomplete frame is forgotten
    d:finish()
    assert.same({
      { stream = E.STDOUT, ts = TS_NS, line = "done", flags = 0 },
      { stream = E.STDOUT, ts = TS_NS, line = "out", flags = E.UNTERMINATED },
      { stream = E.STDERR, ts = TS2_NS, line = "tail-end", flags = E.UNTERMINATED },
    }, d.lines)
    assert.equals(E.INT64_MAX, d:pending_ts())
  end)

  it("reports the oldest pending line's timestamp", function()
    local d = E.decoder()
    assert.equals(E.INT64_MAX, d:pending_ts())
    d:feed(frame(1, TS2 .. " a"))
    assert.equals(TS2_NS, d:pending_ts())
    d:feed(frame(2, TS .. " b"))
    assert.equals(TS_NS, d:pending_ts())
    d:feed(frame(2, TS .. " c\n"))
    assert.equals(TS2_NS, d:pending_ts())
    d:feed(frame(1, TS2 .. " d\n"))
    assert.equals(E.INT64_MAX, d:pending_ts())
    d:feed(frame(3, "Error grabbing logs: x"))
    assert.equals(E.INT64_MAX, d:pending_ts())
    assert.same({ "bc", "ad" }, texts(d.lines))
  end)

  it("drops everything on decoder_reset", function()
    local d = E.decoder()
    d:feed(frame(1, TS .. " partial") .. frame(2, TS):sub(1, 20))
    E.C.decoder_reset(d.cd)
    assert.equals(E.INT64_MAX, d:pending_ts())
    assert.equals(0, d:feed(frame(1, TS .. " fresh\n")))
    d:finish()
    assert.same({ "fresh" }, texts(d.lines))
  end)
end)

describe("decoder, raw (TTY)", function()
  local input = TS .. " one\r\n" .. TS2 .. " two\r\n" .. TS .. " \r\n" ..
                "2024-01-01T02:00:00+02:00 a\rb\0\r\n"
  local want = {
    { stream = E.STDOUT, ts = TS_NS, line = "one", flags = 0 },
    { stream = E.STDOUT, ts = TS2_NS, line = "two", flags = 0 },
    { stream = E.STDOUT, ts = TS_NS, line = "", flags = 0 },
    { stream = E.STDOUT, ts = 1704067200000000000LL, line = "a\rb\0", flags = 0 },
  }

  it("decodes lines, split at any byte offset", function()
    for i = 1, #input - 1 do
      local lines, rc = E.decode(input, { raw = true, slices = { i } })
      assert.equals(0, rc)
      assert.same(want, lines)
    end
    assert.same(want, (E.decode(input, { raw = true, slices = 1 })))
  end)

  -- The local driver in TTY mode: the long line's last chunk ends in the
  -- TTY's '\r' without the '\n', and the next line's "<ts> " follows.
  it("ends a long line whose last chunk lacks its '\\n' at the next line's timestamp", function()
    local text = {}
    for i = 1, 5000 do text[i] = string.format("%07d|", i) end
    text = table.concat(text)
    local input = raw_line(TS, text):sub(1, -2) .. raw_line(TS2, "next") .. raw_line(TS2, "last")
    local function check(lines, rc)
      assert.equals(0, rc)
      assert.equals(3, #lines)
      assert.equals(40000, #lines[1].line)
      assert.is_true(text == lines[1].line)
      assert.equals(TS_NS, lines[1].ts)
      assert.equals(0, lines[1].flags)
      assert.same({ stream = E.STDOUT, ts = TS2_NS, line = "next", flags = 0 }, lines[2])
      assert.equals("last", lines[3].line)
    end
    check(E.decode(input, { raw = true }))
    check(E.decode(input, { raw = true, slices = 1 }))
    check(E.decode(input, { raw = true, slices = 1000 }))
    local last_cr = #input - #raw_line(TS2, "next") - #raw_line(TS2, "last")
    for i = last_cr - 3, last_cr + #TS2 + 3 do check(E.decode(input, { raw = true, slices = { i } })) end
  end)

  it("keeps a '\\r' of a long line that is not followed by another timestamp", function()
    local text = string.rep("a", CHUNK + 10) .. "\rb\r" .. TS .. " same\r2024-x\r\r9 z\r"
    local input = raw_line(TS, text) .. raw_line(TS2, "next")
    for _, slices in ipairs({ false, 1, 7 }) do
      local lines, rc = E.decode(input, { raw = true, slices = slices or nil })
      assert.equals(0, rc)
      assert.same({ text, "next" }, texts(lines))
    end
    local d = E.decoder { raw = true }
    assert.equals(0, d:feed(raw_line(TS, string.rep("a", CHUNK + 1) .. "\r2024-01"):sub(1, -4)))
    d:finish()
    assert.same({ string.rep("a", CHUNK + 1) .. "\r2024-0" }, texts(d.lines)) -- cut: "1\r\n"
    assert.equals(E.UNTERMINATED, d.lines[1].flags)
  end)

  it("removes the repeated prefixes of a 40000-byte line", function()
    local text = {}
    for i = 1, 5000 do text[i] = string.format("%07d|", i) end
    text = table.concat(text)
    assert.equals(40000, #text)
    local input = raw_line(TS, text) .. raw_line(TS2, "next")
    -- the prefix repeats at each 16 KiB boundary of the line's content
    assert.equals(TS .. " ", input:sub(#TS + 2 + CHUNK, #TS + 1 + CHUNK + #TS + 1))
    local function check(lines, rc)
      assert.equals(0, rc)
      assert.equals(2, #lines)
      assert.is_true(text == lines[1].line)
      assert.equals(TS_NS, lines[1].ts)
      assert.equals(0, lines[1].flags)
      assert.same("next", lines[2].line)
    end
    check(E.decode(input, { raw = true }))
    check(E.decode(input, { raw = true, slices = 1000 }))
    for i = #TS + 1 + CHUNK - 3, #TS + 1 + CHUNK + #TS + 4 do
      check(E.decode(input, { raw = true, slices = { i } }))
    end
  end)

  it("removes the repeat when a line fills its chunk exactly", function()
    local text = string.rep("q", CHUNK - 1) -- with its '\r', CHUNK bytes
    local input = raw_line(TS, text)
    assert.equals(TS .. " \n", input:sub(-(#TS + 2)))
    local lines = E.decode(input, { raw = true, slices = 100 })
    assert.same({ { stream = E.STDOUT, ts = TS_NS, line = text, flags = 0 } }, lines)
  end)

  it("keeps text at a chunk boundary that is not the line's prefix", function()
    local body = string.rep("a", CHUNK - 3) .. TS2 .. " x"
    for _, slices in ipairs({ false, 1, CHUNK }) do
      local lines = E.decode(TS .. " " .. body .. "\r\n", { raw = true, slices = slices or nil })
      assert.same({ body }, texts(lines))
    end
    -- the same timestamp without its space is not a prefix either
    body = string.rep("a", CHUNK) .. TS .. "!"
    assert.same({ body }, texts((E.decode(TS .. " " .. body .. "\r\n", { raw = true, slices = 7 }))))
  end)

  it("cuts a long raw line into TRUNCATED pieces of valid UTF-8", function()
    local text = string.rep("é€😀", 4000) -- 36000 bytes
    for _, slices in ipairs({ false, 4096, 333 }) do
      local lines, rc = E.decode(raw_line(TS, text), { raw = true, line_max = 1000,
                                                       slices = slices or nil })
      assert.equals(0, rc)
      assert_pieces(lines, text, 1000, TS_NS)
    end
  end)

  it("emits an inline 'Error grabbing logs: ' line as SYSERR", function()
    local input = TS .. " a\r\nError grabbing logs: broken pipe\n" .. TS2 .. " b\r\n"
    for _, slices in ipairs({ false, 1, 3 }) do
      local lines, rc = E.decode(input, { raw = true, slices = slices or nil })
      assert.equals(0, rc)
      assert.same({
        { stream = E.STDOUT, ts = TS_NS, line = "a", flags = 0 },
        { stream = E.SYSERR, ts = 0LL, line = "Error grabbing logs: broken pipe", flags = 0 },
        { stream = E.STDOUT, ts = TS2_NS, line = "b", flags = 0 },
      }, lines)
    end
  end)

  it("rejects a line without a timestamp", function()
    for _, bad in ipairs({ "hello\r\n", "Error grabbing: x\n", "\r\n",
                           string.rep("7", 100), "2024-13-01T00:00:00Z x\r\n" }) do
      local _, rc, err = E.decode(TS .. " ok\r\n" .. bad, { raw = true })
      assert.equals(-1, rc, bad)
      assert.matches("timestamp", err)
    end
  end)

  it("flushes an unterminated raw line on decoder_finish", function()
    local d = E.decoder({ raw = true })
    d:feed(TS .. " a\r\n" .. TS2 .. " tail")
    assert.equals(TS2_NS, d:pending_ts())
    d:finish()
    assert.same({
      { stream = E.STDOUT, ts = TS_NS, line = "a", flags = 0 },
      { stream = E.STDOUT, ts = TS2_NS, line = "tail", flags = E.UNTERMINATED },
    }, d.lines)
    assert.equals(E.INT64_MAX, d:pending_ts())
  end)

  it("flushes bytes that only began to repeat the prefix at a boundary", function()
    local text = string.rep("r", CHUNK) .. TS:sub(1, 4)
    local lines = E.decode(TS .. " " .. text, { raw = true, finish = true, slices = 5000 })
    assert.same({ { stream = E.STDOUT, ts = TS_NS, line = text, flags = E.UNTERMINATED } }, lines)
  end)
end)

describe("decoder, attach stream (untimed)", function()
  teardown(function() E.release() end)

  it("stamps each multiplexed line with the time its first byte came, across frames", function()
    local d = E.decoder({ untimed = true })
    d.cd.now = 100
    assert.equals(0, d:feed(frame(1, "first li") .. frame(2, "err 1\n")))
    d.cd.now = 200
    -- a frame boundary is no line boundary; a timestamp-like text is content
    assert.equals(0, d:feed(frame(1, "ne\n" .. TS .. " x\n")))
    assert.equals(0, d:feed(frame(1, "tail")))
    d:finish()
    assert.same({
      { stream = E.STDERR, ts = 100, line = "err 1", flags = 0 },
      { stream = E.STDOUT, ts = 100, line = "first line", flags = 0 },
      { stream = E.STDOUT, ts = 200, line = TS .. " x", flags = 0 },
      { stream = E.STDOUT, ts = 200, line = "tail", flags = E.UNTERMINATED },
    }, d.lines)
  end)

  it("reads a TTY stream as stdout lines without their '\\r', split anywhere", function()
    local d = E.decoder({ raw = true, untimed = true })
    d.cd.now = 7
    local text = "a 1\r\nb 2\r\n" .. string.rep("c", CHUNK + 10) .. "\r\n"
    for i = 1, #text, 1000 do assert.equals(0, d:feed(text:sub(i, i + 999))) end
    assert.same({ "a 1", "b 2", string.rep("c", CHUNK + 10) }, texts(d.lines))
    for _, l in ipairs(d.lines) do
      assert.equals(7, tonumber(l.ts))
      assert.equals(E.STDOUT, l.stream)
    end
  end)

  it("cuts a line over line_max into pieces, and keeps the mode through a reset", function()
    local d = E.decoder({ untimed = true, line_max = 4 })
    d.cd.now = 1
    E.C.decoder_reset(d.cd)
    assert.equals(1, d.cd.untimed)
    assert.equals(0, d:feed(frame(1, "abcdefgh\n")))
    assert.same({ "abcd", "efgh" }, texts(d.lines))
    assert.equals(E.TRUNCATED, d.lines[1].flags)
  end)
end)
