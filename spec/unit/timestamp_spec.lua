local E = require("spec.support.ffi")
local ffi = require("ffi")

local S = 1000000000LL -- one second in ns

describe("ts_parse", function()
  it("reads a canonical UTC timestamp to the nanosecond", function()
    local ns, used = E.ts_parse("2024-02-29T12:34:56.123456789Z")
    assert.equals(1709210096123456789LL, ns)
    assert.equals(30, used)
  end)

  it("stops at the end of the timestamp, before the following space", function()
    local ns, used = E.ts_parse("2024-01-01T00:00:00.000000001Z hello")
    assert.equals(1704067200000000001LL, ns)
    assert.equals(30, used)
  end)

  it("reads the epoch", function()
    assert.equals(0LL, (E.ts_parse("1970-01-01T00:00:00Z")))
    assert.equals(-1LL, (E.ts_parse("1969-12-31T23:59:59.999999999Z")))
  end)

  it("accepts 0 to 9 fraction digits", function()
    assert.equals(1704067200000000000LL, (E.ts_parse("2024-01-01T00:00:00Z")))
    assert.equals(1704067200500000000LL, (E.ts_parse("2024-01-01T00:00:00.5Z")))
    assert.equals(1704067200120000000LL, (E.ts_parse("2024-01-01T00:00:00.12Z")))
    assert.equals(1704067200000001000LL, (E.ts_parse("2024-01-01T00:00:00.000001Z")))
    assert.equals(1704067200000000007LL, (E.ts_parse("2024-01-01T00:00:00.000000007Z")))
  end)

  it("converts +hh:mm and -hh:mm offsets to UTC exactly", function()
    local ns, used = E.ts_parse("2024-01-01T00:00:00.000000001+02:00")
    assert.equals(1704060000000000001LL, ns)
    assert.equals(35, used)
    assert.equals(1704087000000000000LL, (E.ts_parse("2024-01-01T00:00:00-05:30")))
    assert.equals(1704067200000000000LL, (E.ts_parse("2024-01-01T00:00:00+00:00")))
  end)

  it("knows the leap years", function()
    assert.equals(1709164800000000000LL, (E.ts_parse("2024-02-29T00:00:00Z")))
    assert.equals(951782400000000000LL, (E.ts_parse("2000-02-29T00:00:00Z")))
    assert.is_nil(E.ts_parse("2023-02-29T00:00:00Z"))
    assert.is_nil(E.ts_parse("2100-02-29T00:00:00Z"))
    assert.is_nil(E.ts_parse("1900-02-29T00:00:00Z"))
    assert.equals(-2203891200000000000LL, (E.ts_parse("1900-03-01T00:00:00Z")))
    assert.equals(4107542400000000000LL, (E.ts_parse("2100-03-01T00:00:00Z")))
  end)

  it("accepts exactly the int64 range", function()
    assert.equals(0x7fffffffffffffffLL, (E.ts_parse("2262-04-11T23:47:16.854775807Z")))
    assert.is_nil(E.ts_parse("2262-04-11T23:47:16.854775808Z"))
    assert.is_nil(E.ts_parse("2262-04-12T00:00:00Z"))
    assert.is_nil(E.ts_parse("9999-12-31T23:59:59Z"))
    assert.equals(-0x7fffffffffffffffLL - 1, (E.ts_parse("1677-09-21T00:12:43.145224192Z")))
    assert.is_nil(E.ts_parse("1677-09-21T00:12:43.145224191Z"))
    assert.is_nil(E.ts_parse("0001-01-01T00:00:00Z"))
  end)

  it("rejects malformed timestamps", function()
    local bad = {
      "", "2024", "2024-01-01", "2024-01-01 00:00:00Z", "2024-01-01t00:00:00Z",
      "2024-13-01T00:00:00Z", "2024-00-01T00:00:00Z", "2024-01-00T00:00:00Z",
      "2024-01-32T00:00:00Z", "2024-04-31T00:00:00Z", "2024-01-01T24:00:00Z",
      "2024-01-01T00:60:00Z", "2024-01-01T00:00:60Z", "2024-01-01T00:00:00",
      "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00.1234567890Z",
      "2024-01-01T00:00:00.123", "2024-01-01T00:00:00+0200",
      "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00+02:60",
      "2024-01-01T00:00:00+02", "2024-01-01T00:00:00z", "2024-01-01T00:00:00Y",
      "2O24-01-01T00:00:00Z", "2024-1-01T00:00:00Z", "2024-01-01T0:00:00Z",
      "2024/01/01T00:00:00Z", " 2024-01-01T00:00:00Z", "+024-01-01T00:00:00Z",
    }
    for _, s in ipairs(bad) do
      assert.is_nil(E.ts_parse(s), s)
    end
  end)

  it("never reads past len", function()
    local s = "2024-01-01T00:00:00.123456789Z"
    local ns, used = ffi.new("int64_t[1]"), ffi.new("size_t[1]")
    -- exact-size heap copies: AddressSanitizer catches a read past the end
    for n = 0, #s - 1 do
      assert.equals(-1, E.C.ts_parse(E.exact_copy(s:sub(1, n)), n, ns, used), s:sub(1, n))
    end
    assert.equals(0, E.C.ts_parse(E.exact_copy(s), #s, ns, used))
  end)
end)

describe("ts_format", function()
  it("writes the canonical form with 9 digits and Z", function()
    assert.equals("2024-02-29T12:34:56.123456789Z", E.ts_format(1709210096123456789LL))
    assert.equals("1970-01-01T00:00:00.000000000Z", E.ts_format(0LL))
    assert.equals("1969-12-31T23:59:59.999999999Z", E.ts_format(-1LL))
    assert.equals(E.TS_LEN, #E.ts_format(1LL))
  end)

  it("writes the ends of the int64 range", function()
    assert.equals("2262-04-11T23:47:16.854775807Z", E.ts_format(0x7fffffffffffffffLL))
    assert.equals("1677-09-21T00:12:43.145224192Z", E.ts_format(-0x7fffffffffffffffLL - 1))
  end)

  it("round trips through ts_parse at nanosecond precision", function()
    local samples = {
      "1970-01-01T00:00:00.000000000Z", "2024-02-29T23:59:59.999999999Z",
      "2000-02-29T12:00:00.000000001Z", "1999-12-31T23:59:59.999999999Z",
      "2261-12-31T23:59:59.999999999Z", "1678-01-01T00:00:00.000000000Z",
      "2038-01-19T03:14:08.000000000Z",
    }
    for _, s in ipairs(samples) do
      assert.equals(s, E.ts_format((E.ts_parse(s))))
    end
  end)

  it("walks every day from 1678 to 2261 in calendar order", function()
    local function leap(y) return y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) end
    local dim = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
    local y, m, d = 1678, 1, 1
    local ns = E.ts_parse("1678-01-01T00:00:00.000000000Z") + 3723 * S + 7
    local day = 86400LL * S
    while y < 2262 do
      local want = string.format("%04d-%02d-%02dT01:02:03.000000007Z", y, m, d)
      local got = E.ts_format(ns)
      if got ~= want then assert.equals(want, got) end
      local back = E.ts_parse(got)
      if back ~= ns then assert.equals(ns, back) end
      local last = (m == 2 and leap(y)) and 29 or dim[m]
      d = d + 1
      if d > last then d, m = 1, m + 1 end
      if m > 12 then m, y = 1, y + 1 end
      ns = ns + day
    end
    assert.equals(2262, y)
  end)
end)

describe("ts_format_since", function()
  it("writes SECONDS.NANOSECONDS", function()
    assert.equals("1709210096.123456789", E.ts_format_since(1709210096123456789LL))
    assert.equals("1.000000005", E.ts_format_since(1000000005LL))
    assert.equals("0.000000000", E.ts_format_since(0LL))
  end)

  it("writes 0.000000000 for negative times", function()
    assert.equals("0.000000000", E.ts_format_since(-1LL))
    assert.equals("0.000000000", E.ts_format_since(-5000000000LL))
  end)
end)

describe("ts_now", function()
  it("returns the wall clock in nanoseconds", function()
    local now = E.C.ts_now()
    -- after 2024-01-01 and before 2200-01-01
    assert.is_true(now > 1704067200LL * S)
    assert.is_true(now < (E.ts_parse("2200-01-01T00:00:00Z")))
    assert.is_true(math.abs(os.time() - tonumber(now / S)) <= 5)
  end)
end)
