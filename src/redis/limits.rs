//! The rate-limit scripts, one per algorithm: every op of a batch (one cluster slot) in one call.
//! Each returns four numbers per op: `hits`, `reset` (ms), `allowed` (1 or 0) and `retry` (ms
//! until a refused op could pass; -1: never, its cost is over the limit). A failing op (e.g.
//! WRONGTYPE) yields `-1, -3, 0, 0` for that op only; `READONLY` (a demoted primary) fails the
//! whole call. The op letters:
//! - `i` increment, `g` get, `d` decrement, `r` reset: the express-rate-limit store's ops;
//! - `l` limit (args: cost, limit, window ms): counts `cost` only when it fits under `limit`, so
//!   a refused call consumes nothing; cost 0 reads without writing;
//! - `h` hit (args: cost, limit, window ms), and `i` with the store's limit and window: counts
//!   always, as express-rate-limit's and @fastify/rate-limit's stores do (the middleware
//!   decides, and may decrement), and allows while the count is at most `limit`; a refused
//!   hit's `retry` is when the next one would pass;
//! - `t` throttle (args: block ms, limit, window ms; fixed window only): @nestjs/throttler's
//!   `increment`: a key over its limit is blocked for the block duration and not counted.
//!
//! A key's state is read once per script call and written once at its end (`load`, `save`,
//! `write` below): a hot key's 64 ops of a batch cost one read and one write, not 64 of each. A
//! write that fails (OOM) fails every op that counted on it. An `l`/`h` of a cost > 0 on a key
//! that has no other op in the call (the usual case on many keys) goes straight to Redis, with
//! no state table: fixed window `PTTL`, then `SET PX` or `INCRBY`; sliding window `GET`, then
//! `SETRANGE` over the same text (`SET PX` when the window changed); GCRA `GET`, then `INCRBY`
//! (`SET PX` for a new key; `PEXPIRE` when the TAT moves on to a later slot). An op letter in
//! upper case repeats the args of the op before it (the usual case: one limiter's calls share
//! limit and window). A `u` after the letters says that every key of the call has one op, so the
//! scripts need not count each key's ops (about 5 % of their time per op on many keys).
//!
//! Key layout (README, "Limits"): the fixed window is rate-limit-redis's integer string at
//! `${prefix}${key}`; the sliding window the string `<window index>:<current count>:<previous
//! count>` at `${prefix}sw:${key}`, expiring at the end of the next window (every write in a
//! window sets the same expiry, so a key already of the current window keeps its TTL); GCRA
//! the theoretical arrival time (whole µs since the epoch, an integer string) at
//! `${prefix}gcra:${key}`, expiring a window past the end of the window-long slot (on the epoch
//! grid) that holds the TAT. Sliding
//! window and GCRA read the time with `TIME`, once per call: the clock of the server that holds
//! the key, never a host's.

use std::sync::LazyLock;

use super::scripts::Script;

/// The common part of the three scripts: the per-key state cache, and the loop that runs
/// `one(op, key, a1, a2, a3)` for every op, catching each op's error. `ARGV` from `ARGV[first]`
/// on: three args per op of the letters `l`, `h`, `t` (none for `L`, `H`, `T`: the previous
/// op's). Each script defines `load` (reads into `cache`) and `write` (the state to Redis).
const CACHE: &str = r#"
local cache, dirty, owners, out, count = {}, {}, {}, {}, {}
local readonly, unique = nil, false
local function errtext(e) return tostring(type(e) == "table" and e.err or e) end
local write
-- Write the pending state of `k`; on failure, every op that counted on it fails.
local function flush(k)
  if dirty[k] then
    dirty[k] = nil
    local ok, e = pcall(write, k, cache[k])
    if not ok then
      local msg = errtext(e)
      if string.find(msg, "READONLY", 1, true) then readonly = msg end
      local o = owners[k]
      if type(o) == "number" then o = { o } end
      for _, j in ipairs(o or {}) do
        out[j], out[j + 1], out[j + 2], out[j + 3] = -1, -3, 0, 0
      end
    end
  end
  cache[k], owners[k] = nil, nil
end
-- The new state of `k`: written at once when `k` has no other op in this call, else at the end.
local function save(k, s)
  s.found = true
  if unique or count[k] == 1 then
    write(k, s)
    return
  end
  cache[k] = s
  dirty[k] = true
end
-- Keep the state read for `k` for its next ops in this call.
local function keep(k, s)
  if not unique and count[k] > 1 then cache[k] = s end
  return s
end
-- Forget `k`'s pending state (it is being deleted).
local function drop(k)
  cache[k], dirty[k], owners[k] = nil, nil, nil
end
"#;

const LOOP: &str = r#"
-- How many ops each key has in this call, when the call has an op that uses the counts. A
-- trailing "u" (after the op letters) says that every key of the call has one op: no counting.
unique = string.byte(ops, -1) == 117
if not unique and string.find(ops, "COUNTED") then
  for _, k in ipairs(KEYS) do count[k] = (count[k] or 0) + 1 end
end
local a = FIRST
local x, y, z = 0, 0, 0
-- The op letters as bytes, read at once (one `string.byte`, not a `string.sub` per op), and per
-- byte the op: `l`, `h`, `t` bring their own args; `L`, `H`, `T` are the same ops with the
-- previous op's args.
local codes = { string.byte(ops, 1, #KEYS) }
local letter = { [105] = "i", [103] = "g", [100] = "d", [114] = "r", [108] = "l", [104] = "h",
  [116] = "t", [76] = "l", [72] = "h", [84] = "t" }
local own_args = { [108] = true, [104] = true, [116] = true }
for i, k in ipairs(KEYS) do
  local c = codes[i]
  local op = letter[c] or string.char(c)
  if own_args[c] then
    x, y, z = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    a = a + 3
  end
  local ok, h, t, al, rt = pcall(one, op, k, x, y, z)
  local j = 4 * i - 3
  if ok then
    out[j], out[j + 1], out[j + 2], out[j + 3] = h, t, al, rt
    if dirty[k] then
      local o = owners[k]
      if o == nil then
        owners[k] = j
      elseif type(o) == "number" then
        owners[k] = { o, j }
      else
        o[#o + 1] = j
      end
    end
  elseif string.find(errtext(h), "READONLY", 1, true) then
    return redis.error_reply(errtext(h))
  else
    out[j], out[j + 1], out[j + 2], out[j + 3] = -1, -3, 0, 0
  end
end
for k in pairs(dirty) do flush(k) end
if readonly then return redis.error_reply(readonly) end
return out"#;

fn with_loop(body: &str, first: usize) -> &'static str {
  with_loop_counting(body, first, ".")
}

/// `with_loop`, counting each key's ops only in calls with an op letter that `counted` (a Lua
/// pattern) matches.
fn with_loop_counting(body: &str, first: usize, counted: &str) -> &'static str {
  let looped = LOOP
    .replace("FIRST", &first.to_string())
    .replace("COUNTED", counted);
  let text = format!("{CACHE}{body}{looped}");
  Box::leak(text.into_boxed_str())
}

/// The fixed window. `i`, `g`, `d`, `r` are exactly rate-limit-redis's increment (v4.3–v6) and
/// the store's get, decrement (never below zero, never without a TTL) and reset, run one by one
/// (a pending `l`/`h`/`t` state of the key is written first). `l`/`h`/`t` keep the count and
/// TTL read once; the write is `SET count PX` for a window started here, else `INCRBY` the
/// difference (and `PEXPIRE` for a new TTL: a block, or resetExpiryOnChange).
/// ARGV: resetExpiryOnChange ("1"/"0"), window ms, the op letters, then the ops' args.
pub static FIXED: LazyLock<Script> = LazyLock::new(|| {
  Script::new(with_loop_counting(
    r#"local reset = ARGV[1] == "1"
local window = tonumber(ARGV[2])
local ops = ARGV[3]
local function load(k, w)
  local s = cache[k]
  if s and s.w == w then return s end
  if s then flush(k) end
  local t = redis.call("PTTL", k)
  s = { w = w, fresh = t <= 0, h = 0, base = 0, t = t }
  if s.fresh then
    s.t = w
  else
    s.h = tonumber(redis.call("GET", k)) or 0
    s.base = s.h
  end
  return keep(k, s)
end
write = function(k, s)
  if s.fresh then
    redis.call("SET", k, s.h, "PX", s.px or s.w)
  else
    if s.h ~= s.base then redis.call("INCRBY", k, s.h - s.base) end
    if s.px then redis.call("PEXPIRE", k, s.px) end
  end
end
local function one(op, k, x, lim, w)
  if op == "i" then
    if cache[k] then flush(k) end
    local t = redis.call("PTTL", k)
    if t <= 0 then
      redis.call("SET", k, 1, "PX", window)
      return 1, window, 1, 0
    end
    local h = redis.call("INCR", k)
    if reset then
      redis.call("PEXPIRE", k, window)
      t = window
    end
    return h, t, 1, 0
  elseif op == "g" then
    if cache[k] then flush(k) end
    local h = tonumber(redis.call("GET", k))
    if h == nil then return -1, -2, 1, 0 end
    return h, redis.call("PTTL", k), 1, 0
  elseif op == "d" then
    if cache[k] then flush(k) end
    local v = tonumber(redis.call("GET", k))
    if v == nil then return -1, -2, 1, 0 end
    if v > 0 then v = redis.call("DECR", k) end
    local t = redis.call("PTTL", k)
    if t < 0 then
      redis.call("PEXPIRE", k, window)
      t = window
    end
    return v, t, 1, 0
  elseif op == "r" then
    drop(k)
    return redis.call("DEL", k), 0, 1, 0
  end
  if (unique or count[k] == 1) and op ~= "t" and x > 0 then
    -- the key's only op of this call: straight to Redis
    local t = redis.call("PTTL", k)
    if t <= 0 then
      if op == "l" and x > lim then return x, w, 0, -1 end
      redis.call("SET", k, x, "PX", w)
      if x > lim then return x, w, 0, w end
      return x, w, 1, 0
    end
    local h = redis.call("INCRBY", k, x)
    if op == "l" and h > lim then
      redis.call("DECRBY", k, x)
      if x > lim then return h, t, 0, -1 end
      return h, t, 0, t
    end
    if reset then
      redis.call("PEXPIRE", k, w)
      t = w
    end
    if h > lim then return h, t, 0, t end
    return h, t, 1, 0
  end
  local s = load(k, w)
  local h, t = s.h, s.t
  if op == "t" then
    if h > lim then return h, t, 0, t end
    s.h = h + 1
    if s.h > lim then
      s.px, s.t = x, x
      save(k, s)
      return s.h, t, 0, x
    end
    save(k, s)
    return s.h, t, 1, 0
  end
  if x == 0 then
    if h < lim then return h, t, 1, 0 end
    return h, t, 0, t
  end
  if op == "l" and x > lim then return h + x, t, 0, -1 end
  if op == "l" and h + x > lim then return h + x, t, 0, t end
  s.h = h + x
  if reset and not s.fresh then s.px, s.t = w, w end
  save(k, s)
  if s.h > lim then return s.h, s.t, 0, s.t end
  return s.h, s.t, 1, 0
end"#,
    4,
    // Only `l`/`h`/`t` use the counts: a call of the store's `i`/`g`/`d`/`r` skips them.
    "[lhtLHT]",
  ))
});

/// The sliding window: the count is the current window's hits plus the previous window's,
/// weighted by how much of it the sliding window still covers (rounded down). Windows are
/// aligned on multiples of the window length since the epoch, on Redis's clock. `reset`: ms
/// until the current window ends. A refused `l` writes nothing; its `retry` is exact to the ms.
/// ARGV: the op letters, the store's limit and window (for `i`, `g`, `d`), then the ops' args.
pub static SLIDING: LazyLock<Script> = LazyLock::new(|| {
  Script::new(with_loop(
    r#"local ceil, floor, max = math.ceil, math.floor, math.max
local ops = ARGV[1]
local slim, swin = tonumber(ARGV[2]), tonumber(ARGV[3])
local tm = redis.call("TIME")
local now = tonumber(tm[1]) * 1000 + floor(tonumber(tm[2]) / 1000)
local function load(k, w)
  local s = cache[k]
  if s and s.w == w then return s end
  if s then flush(k) end
  local v = redis.call("GET", k)
  local cur = floor(now / w)
  local idx, c, p
  if v then
    local a1, a2, a3 = string.match(v, "^(%d+):(%d+):(%d+)$")
    idx, c, p = tonumber(a1), tonumber(a2) or 0, tonumber(a3) or 0
  end
  local same = idx == cur
  if idx == nil then
    c, p = 0, 0
  elseif idx == cur - 1 then
    c, p = 0, c
  elseif not same then
    c, p = 0, 0
  end
  s = { w = w, found = idx ~= nil, same = same, cur = cur, c = c, p = p, e = now - cur * w }
  return keep(k, s)
end
-- Every write in window `cur` sets the expiry `(cur + 2) * w` (PX `2w - e`): a key already of
-- this window keeps its TTL (KEEPTTL: no new expiry to parse and store).
write = function(k, s)
  if s.same then
    redis.call("SET", k, s.cur .. ":" .. s.c .. ":" .. s.p, "KEEPTTL")
  else
    redis.call("SET", k, s.cur .. ":" .. s.c .. ":" .. s.p, "PX", 2 * s.w - s.e)
  end
end
-- ms until `cost` fits under `lim` (the count only falls with time)
local function retry(c, p, e, w, cost, lim)
  if c + cost <= lim then
    local es = w - (lim - c - cost + 1) * w / p
    return floor(es) + 1 - e
  end
  local m = lim - cost
  if c <= m then return w - e end
  local es = w - (m + 1) * w / c
  return w - e + floor(es) + 1
end
-- Per window length: the window index, ms into it, and the value's "<index>:" prefix.
local wins = {}
-- The counts' texts read in this call, as numbers, and the new counts' texts: counts repeat
-- (small integers), and `tonumber` (a `strtod`) and `tostring` (a `sprintf`) each cost about
-- 10 % of the script's time per op.
local num, texts = {}, {}
local function count_of(t)
  local n = num[t]
  if n == nil then
    n = tonumber(t)
    num[t] = n
  end
  return n
end
-- `l` / `h` of a cost > 0 on a key with no other op in this call: straight to Redis (`GET`,
-- then `SETRANGE`, or `SET PX` in a new window), no state table; the counts it does not change
-- keep the text it read.
local function fast(op, k, x, lim, w)
  local win = wins[w]
  if win == nil then
    local cur = floor(now / w)
    win = { cur, now - cur * w, cur .. ":" }
    wins[w] = win
  end
  local cur, e = win[1], win[2]
  local v = redis.call("GET", k)
  local c, p, ps, same = 0, 0, "0", false
  if v then
    local pre = win[3]
    if string.find(v, pre, 1, true) == 1 then
      local a2, a3 = string.match(v, "^(%d+):(%d+)$", #pre + 1)
      if a3 then
        -- (`count_of`, written out: the hot path)
        c, p = num[a2], num[a3]
        if c == nil then
          c = tonumber(a2)
          num[a2] = c
        end
        if p == nil then
          p = tonumber(a3)
          num[a3] = p
        end
        ps, same = a3, true
      end
    else
      local a1, a2 = string.match(v, "^(%d+):(%d+):%d+$")
      if tonumber(a1) == cur - 1 then p, ps = count_of(a2), a2 end
    end
  end
  local n = c + floor(p * (w - e) / w)
  if op == "l" then
    if x > lim then return n + x, w - e, 0, -1 end
    if n + x > lim then return n + x, w - e, 0, retry(c, p, e, w, x, lim) end
  end
  local n2 = c + x
  local cs = texts[n2]
  if cs == nil then
    cs = tostring(n2)
    texts[n2] = cs
  end
  if same then
    -- The same text with a larger count: never shorter, so `SETRANGE` from 0 rewrites it in
    -- place, keeps the TTL and answers a number (`SET` answers a status, a Lua table).
    redis.call("SETRANGE", k, "0", win[3] .. cs .. ":" .. ps)
  else
    redis.call("SET", k, win[3] .. cs .. ":" .. ps, "PX", 2 * w - e)
  end
  if n + x <= lim then return n + x, w - e, 1, 0 end
  return n + x, w - e, 0, retry(c + x, p, e, w, 1, lim)
end
local function one(op, k, x, lim, w)
  if op == "r" then
    drop(k)
    return redis.call("DEL", k), 0, 1, 0
  end
  if op ~= "l" and op ~= "h" then
    x, lim, w = 1, slim, swin
  elseif x > 0 and (unique or count[k] == 1) then
    return fast(op, k, x, lim, w)
  end
  local s = load(k, w)
  local c, p, e = s.c, s.p, s.e
  local n = c + floor(p * (w - e) / w)
  if op == "g" then
    if not s.found then return -1, -2, 1, 0 end
    return n, w - e, 1, 0
  elseif op == "d" then
    if not s.found then return -1, -2, 1, 0 end
    if c > 0 then
      s.c = c - 1
      save(k, s)
      n = n - 1
    end
    return n, w - e, 1, 0
  end
  if x == 0 then
    if n < lim then return n, w - e, 1, 0 end
    return n, w - e, 0, retry(c, p, e, w, 1, lim)
  end
  if op ~= "l" then
    -- counts always; a refused hit's retry is when the next one passes
    s.c = c + x
    save(k, s)
    if n + x <= lim then return n + x, w - e, 1, 0 end
    return n + x, w - e, 0, retry(c + x, p, e, w, 1, lim)
  end
  if x > lim then return n + x, w - e, 0, -1 end
  if n + x > lim then return n + x, w - e, 0, retry(c, p, e, w, x, lim) end
  s.c = c + x
  save(k, s)
  return n + x, w - e, 1, 0
end"#,
    4,
  ))
});

/// GCRA, the generic cell rate algorithm: one key per client holding its theoretical arrival
/// time (TAT), on Redis's clock, in whole µs since the epoch (an integer string, so a write is
/// an in-place `INCRBY`). Emission interval `T = window / limit`, rounded to the µs; a call of
/// cost `n` passes when `max(TAT, now) + n·T - now <= burst·T` and then moves TAT there. The key
/// expires a window past the end of the slot that holds its TAT (slots a window long, on the
/// epoch grid): one to two windows after the TAT, rewritten only when the TAT moves on to a
/// later slot, so a write needs no `PTTL`. `hits`: the capacity in use after the call, in calls
/// (`ceil((TAT - now) / T)`); `reset`: ms until the TAT is reached (capacity fully back);
/// `retry`: ms until the call would pass (exact, rounded up). A refused `l` writes nothing.
/// ARGV: the op letters, the store's limit, window, and burst (0: the limit), then the ops' args.
pub static GCRA: LazyLock<Script> = LazyLock::new(|| {
  Script::new(with_loop(
    r#"local ceil, floor, max = math.ceil, math.floor, math.max
local ops = ARGV[1]
local slim, swin, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tm = redis.call("TIME")
-- µs since the epoch: integers, exact in a Lua number (a double) until the year 2255
local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
local function used(d, T)
  if d <= 0 then return 0 end
  return ceil(d / T)
end
-- µs to ms, rounded up
local function ms(d) return ceil(d / 1000) end
-- The stored TAT: a whole number of µs, or nil (no key, or a value of another layout).
local function stored(v)
  v = tonumber(v)
  if v and v == floor(v) then return v end
  return nil
end
-- Move `k`'s TAT from `v` (nil: none) to `nt`, with an expiry at least `w` ms past it: a new key
-- is `SET PX`; an existing one `INCRBY` in place, and `PEXPIRE` only when its TTL falls short.
-- Numbers cross to `redis.call` as text made with `fmt("%d", n)`: Redis would make it with
-- `%.17g`, which costs about 10 % of the script's time per op for a TAT or a µs delta.
local fmt = string.format
-- The expiry, as a PX from now, of a key whose TAT is in slot `e` (slots: `W` µs, on the epoch
-- grid): a window past the slot's end.
local function px(e, W, w) return fmt("%d", ceil((e * W - now) / 1000) + w) end
-- Move `k`'s TAT from `v` (nil: none) to `nt`, expiring a window past the end of the window-long
-- slot that holds it: a new key is `SET PX`; an existing one `INCRBY` in place, and `PEXPIRE`
-- only when the TAT moves on to a later slot (no `PTTL` to read).
local function move(k, v, nt, w)
  local W = w * 1000
  local e = ceil(nt / W)
  if v == nil then
    redis.call("SET", k, fmt("%d", nt), "PX", px(e, W, w))
    return
  end
  if nt ~= v then redis.call("INCRBY", k, fmt("%d", nt - v)) end
  if e > ceil(v / W) then redis.call("PEXPIRE", k, px(e, W, w)) end
end
local function load(k)
  local s = cache[k]
  if s then return s end
  local v = stored(redis.call("GET", k))
  s = { found = v ~= nil, v = v, tat = v or now }
  return keep(k, s)
end
write = function(k, s)
  move(k, s.v, s.tat, s.w)
end
-- `l` / `h` of a cost > 0 on a key with no other op in this call (the usual case on many keys):
-- straight to Redis, no state table: `GET`, then `INCRBY` (or `SET PX` for a new key). `stored`,
-- `move`, `used` and `ms` are written out here: on the hot path that saves ~10 % of the script's
-- time per op. `d`: µs from now to the new TAT.
local function fast(op, k, x, b, T, tau, w)
  local v = tonumber(redis.call("GET", k))
  if v and v ~= floor(v) then v = nil end
  local tat = now
  if v and v > now then tat = v end
  local nt = tat + x * T
  local d = nt - now
  if d > tau and op == "l" then
    if x > b then return ceil((tat - now) / T) + x, ceil((tat - now) / 1000), 0, -1 end
    return ceil(d / T), ceil((tat - now) / 1000), 0, max(1, ceil((d - tau) / 1000))
  end
  local W = w * 1000
  local e = ceil(nt / W)
  if v == nil then
    redis.call("SET", k, fmt("%d", nt), "PX", px(e, W, w))
  else
    redis.call("INCRBY", k, fmt("%d", nt - v))
    if e > ceil(v / W) then redis.call("PEXPIRE", k, px(e, W, w)) end
  end
  if d <= tau then return ceil(d / T), ceil(d / 1000), 1, 0 end
  return ceil(d / T), ceil(d / 1000), 0, max(1, ceil((d + T - tau) / 1000))
end
local function one(op, k, x, lim, w)
  if op == "r" then
    drop(k)
    return redis.call("DEL", k), 0, 1, 0
  end
  if op ~= "l" and op ~= "h" then x, lim, w = 1, slim, swin end
  local T = max(1, floor(w * 1000 / lim + 0.5))
  local b = lim
  if burst > 0 then b = burst end
  local tau = b * T
  if x > 0 and (unique or count[k] == 1) and (op == "l" or op == "h") then
    return fast(op, k, x, b, T, tau, w)
  end
  local s = load(k)
  local tat = s.tat
  if tat < now then tat = now end
  if op == "g" then
    if not s.found then return -1, -2, 1, 0 end
    return used(tat - now, T), ms(tat - now), 1, 0
  elseif op == "d" then
    if not s.found then return -1, -2, 1, 0 end
    tat = max(now, tat - T)
    s.tat, s.w = tat, w
    save(k, s)
    return used(tat - now, T), ms(tat - now), 1, 0
  end
  if x == 0 then
    local nt = tat + T
    if nt - now <= tau then return used(tat - now, T), ms(tat - now), 1, 0 end
    return used(tat - now, T), ms(tat - now), 0, ms(nt - tau - now)
  end
  local nt = tat + x * T
  if op ~= "l" then
    -- counts always; a refused hit's retry is when the next one passes
    s.tat, s.w = nt, w
    save(k, s)
    if nt - now <= tau then return used(nt - now, T), ms(nt - now), 1, 0 end
    return used(nt - now, T), ms(nt - now), 0, max(1, ms(nt + T - tau - now))
  end
  if x > b then return used(tat - now, T) + x, ms(tat - now), 0, -1 end
  if nt - now > tau then
    return used(nt - now, T), ms(tat - now), 0, max(1, ms(nt - tau - now))
  end
  s.tat, s.w = nt, w
  save(k, s)
  return used(nt - now, T), max(1, ms(nt - now)), 1, 0
end"#,
    5,
  ))
});
