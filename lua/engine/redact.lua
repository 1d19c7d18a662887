--- engine.redact: masks common secrets in text, and a ready filter.
--
--   local redact = require("engine.redact")
--   redact.text("Authorization: Bearer eyJhbGciOi.x.y")  --> "Authorization: Bearer [REDACTED]", 1
--   filters = { redact.filter({ fields = { "line" } }) }
--
-- Rules, applied in this order (names for the `rules` option):
--   bearer        "Bearer <token>"                  -> "Bearer [REDACTED]"
--   url_password  "scheme://user:secret@host"        -> "scheme://user:[REDACTED]@host"
--   secret_kv     password=..., passwd, pwd, secret, token, api_key, apikey,
--                 access_token, client_secret (with "=" or ":" , quotes kept)
--                                                    -> "password=[REDACTED]"
--   email         "ann.lee@example.com"              -> "[EMAIL]"
--   card          13 to 16 digits (alone, or 4-4-4-4 / 4-6-5 groups split by
--                 spaces or dashes) that pass the Luhn check -> "[CARD]"
--
-- redact.text(s, opts) returns the masked text and the number of masks.
-- redact.filter(opts) returns a filter table masking the string fields in
-- opts.fields (default { "line" }) of every record; records it changed get
-- `redacted = <count>`. opts for both: rules (a list of rule names; default
-- all), mask (default "[REDACTED]"; email and card use "[EMAIL]"/"[CARD]"
-- unless mask is given); for the filter also name (default "redact"),
-- select, on_error.
local options = require("engine.options")

local M = {}

local function luhn(digits)
  local sum, alt = 0, false
  for i = #digits, 1, -1 do
    local d = digits:byte(i) - 48
    if alt then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
    alt = not alt
  end
  return sum % 10 == 0
end

local SECRET_KEYS = { "password", "passwd", "pwd", "secret", "token", "api_key", "apikey",
  "access_token", "client_secret" }

local CARD_PATTERNS = {
  "%f[%w]%d%d%d%d[ %-]%d%d%d%d[ %-]%d%d%d%d[ %-]%d%d%d%d%f[%W]",
  "%f[%w]%d%d%d%d[ %-]%d%d%d%d%d%d[ %-]%d%d%d%d%d%f[%W]",
  "%f[%w]" .. ("%d"):rep(13) .. "%d?%d?%d?%f[%W]",
}

-- Each rule: function(s, mask) -> s, count.
local RULES = {
  bearer = function(s, mask)
    return s:gsub("([Bb][Ee][Aa][Rr][Ee][Rr]%s+)[%w%-%._~%+/]+=*", "%1" .. mask)
  end,
  url_password = function(s, mask)
    return s:gsub("(%a[%w%+%.%-]*://[^:/@%s]+:)[^@%s/]+@", "%1" .. mask .. "@")
  end,
  secret_kv = function(s, mask)
    local total = 0
    for _, key in ipairs(SECRET_KEYS) do
      local n
      s, n = s:gsub("(%f[%w_]" .. key .. "[\"']?%s*[=:]%s*)([\"']?)[^%s\"',;&]+", function(prefix, quote)
        return prefix .. quote .. mask
      end)
      total = total + n
    end
    return s, total
  end,
  email = function(s, mask, default_mask)
    return s:gsub("[%w%._%%%+%-]+@[%w%-]+%.[%w%.%-]*%a", default_mask and "[EMAIL]" or mask)
  end,
  card = function(s, mask, default_mask)
    local total = 0
    for _, pat in ipairs(CARD_PATTERNS) do
      s = s:gsub(pat, function(m)
        if luhn((m:gsub("[ %-]", ""))) then
          total = total + 1
          return default_mask and "[CARD]" or mask
        end
      end)
    end
    return s, total
  end,
}

M.RULE_ORDER = { "bearer", "url_password", "secret_kv", "email", "card" }

local function rule_list(names)
  local out = {}
  local wanted
  if names then
    wanted = {}
    for _, n in ipairs(names) do
      -- level 4: rule_list, masker, text or filter, the user's call
      options.require(RULES[n], "redact", "unknown rule " .. tostring(n), 4)
      wanted[n] = true
    end
  end
  for _, n in ipairs(M.RULE_ORDER) do
    if not wanted or wanted[n] then out[#out + 1] = RULES[n] end
  end
  return out
end

local TEXT = { rules = true, mask = true }
local FILTER = { rules = true, mask = true, fields = true, name = true, select = true, on_error = true }

local function masker(opts)
  opts = opts or {}
  local rules = rule_list(opts.rules)
  local mask = opts.mask or "[REDACTED]"
  local default_mask = opts.mask == nil
  return function(s)
    local total = 0
    for i = 1, #rules do
      local n
      s, n = rules[i](s, mask, default_mask)
      total = total + n
    end
    return s, total
  end
end

--- Returns text with the secrets masked, and the number of masks.
function M.text(s, opts)
  if opts ~= nil then options.check(opts, TEXT, "redact.text", 2) end
  return masker(opts)(s)
end

--- Returns a filter table that masks secrets in records' fields.
function M.filter(opts)
  opts = options.check(opts or {}, FILTER, "redact.filter", 2)
  local mask = masker(opts)
  local fields = opts.fields or { "line" }
  return {
    name = opts.name or "redact",
    select = opts.select,
    on_error = opts.on_error,
    process = function(batch)
      for _, rec in ipairs(batch) do
        local count = 0
        for _, f in ipairs(fields) do
          local v = rec[f]
          if type(v) == "string" then
            local n
            v, n = mask(v)
            if n > 0 then
              rec[f] = v
              count = count + n
            end
          end
        end
        if count > 0 then rec.redacted = count end
      end
    end,
  }
end

return M
