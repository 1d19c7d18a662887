--- engine.time: Docker's RFC3339Nano timestamps <-> seconds and nanoseconds,
-- exact to the nanosecond (two integers; no float holds the whole time).
--
--   local time = require("engine.time")
--   local s, ns = time.parse("2024-05-06T07:08:09.123456789Z") --> 1714979289, 123456789
--   time.format(s, ns)       --> "2024-05-06T07:08:09.123456789Z"
--   time.parse("2024-05-06T09:08:09.5+02:00")                  --> 1714979289, 500000000
--   time.diff(s1, ns1, s2, ns2) --> (s1,ns1) - (s2,ns2) in seconds, a number
--
-- parse accepts a fraction of 0 to 9 digits and "Z" or an "+hh:mm"/"-hh:mm"
-- offset; it returns nil and a message for anything else. format always
-- writes the canonical UTC form with 9 fraction digits, like record.time.
local M = {}

local floor = math.floor

-- Days since 1970-01-01 of a proleptic Gregorian date.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local DAYS_IN = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

--- Parses an RFC3339 timestamp. Returns seconds since the epoch (UTC) and
-- nanoseconds (0..999999999), or nil and a message.
function M.parse(text)
  if type(text) ~= "string" then return nil, "time.parse: expected a string" end
  local y, mo, d, h, mi, s, rest = text:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil, "time.parse: not an RFC3339 timestamp: " .. text end
  y, mo, d, h, mi, s = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  if mo < 1 or mo > 12 or d < 1 or d > DAYS_IN[mo] or h > 23 or mi > 59 or s > 60 then
    return nil, "time.parse: out of range: " .. text
  end
  local ns = 0
  local frac, zone = rest:match("^%.(%d+)(.*)$")
  if frac then
    if #frac > 9 then return nil, "time.parse: more than 9 fraction digits: " .. text end
    ns = tonumber(frac .. ("0"):rep(9 - #frac))
  else
    zone = rest
  end
  local offset = 0
  if zone ~= "Z" and zone ~= "z" then
    local sign, oh, om = zone:match("^([+-])(%d%d):(%d%d)$")
    if not sign then return nil, "time.parse: bad zone in " .. text end
    offset = (tonumber(oh) * 60 + tonumber(om)) * 60
    if sign == "-" then offset = -offset end
  end
  local secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
  return secs, ns
end

--- Formats seconds and nanoseconds as "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ".
function M.format(secs, ns)
  ns = ns or 0
  assert(secs == floor(secs) and ns == floor(ns) and ns >= 0 and ns < 1e9,
    "time.format: expects integer seconds and nanoseconds 0..999999999")
  local days = floor(secs / 86400)
  local rem = secs - days * 86400
  local y, m, d = civil_from_days(days)
  return ("%04d-%02d-%02dT%02d:%02d:%02d.%09dZ"):format(y, m, d, floor(rem / 3600),
    floor(rem % 3600 / 60), rem % 60, ns)
end

--- (s1, ns1) - (s2, ns2) in seconds, as a number (exact when it fits a double).
function M.diff(s1, ns1, s2, ns2)
  return (s1 - s2) + (ns1 - ns2) / 1e9
end

--- The current time as seconds and nanoseconds (the nanoseconds are 0: Lua's
-- clock has whole seconds).
function M.now()
  return os.time(), 0
end

return M
