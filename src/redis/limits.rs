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
//! Key layout (README, "Limits"): the fixed window is rate-limit-redis's integer string at
//! `${prefix}${key}`; the sliding window a hash `{ w: window index, c: current count, p:
//! previous count }` at `${prefix}sw:${key}`; GCRA the theoretical arrival time (ms since the
//! epoch, a decimal string) at `${prefix}gcra:${key}`. Sliding window and GCRA read the time
//! with `TIME`, once per call: the clock of the server that holds the key, never a host's.

use std::sync::LazyLock;

use super::scripts::Script;

/// The common tail of the three scripts: run `one(op, key, a1, a2, a3)` for every op, catching
/// each op's error. `ARGV` from `ARGV[first]` on: three args per op of the letters `l`, `h`, `t`.
const LOOP: &str = r#"
local out = {}
local a = FIRST
for i, k in ipairs(KEYS) do
  local op = string.sub(ops, i, i)
  local x, y, z = 0, 0, 0
  if op == "l" or op == "h" or op == "t" then
    x, y, z = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    a = a + 3
  end
  local ok, h, t, al, rt = pcall(one, op, k, x, y, z)
  local j = 4 * i - 3
  if ok then
    out[j], out[j + 1], out[j + 2], out[j + 3] = h, t, al, rt
  elseif string.find(tostring(type(h) == "table" and h.err or h), "READONLY", 1, true) then
    return redis.error_reply(tostring(type(h) == "table" and h.err or h))
  else
    out[j], out[j + 1], out[j + 2], out[j + 3] = -1, -3, 0, 0
  end
end
return out"#;

fn with_loop(body: &str, first: usize) -> &'static str {
  let text = format!("{body}{}", LOOP.replace("FIRST", &first.to_string()));
  Box::leak(text.into_boxed_str())
}

/// The fixed window. `i`, `g`, `d`, `r` are exactly rate-limit-redis's increment (v4.3–v6) and
/// the store's get, decrement (never below zero, never without a TTL) and reset.
/// ARGV: resetExpiryOnChange ("1"/"0"), window ms, the op letters, then the ops' args.
pub static FIXED: LazyLock<Script> = LazyLock::new(|| {
  Script::new(with_loop(
    r#"local reset = ARGV[1] == "1"
local window = tonumber(ARGV[2])
local ops = ARGV[3]
local function one(op, k, x, lim, w)
  if op == "i" then
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
    local h = tonumber(redis.call("GET", k))
    if h == nil then return -1, -2, 1, 0 end
    return h, redis.call("PTTL", k), 1, 0
  elseif op == "d" then
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
    return redis.call("DEL", k), 0, 1, 0
  end
  local t = redis.call("PTTL", k)
  local fresh = t <= 0
  local h = 0
  if fresh then t = w else h = tonumber(redis.call("GET", k)) or 0 end
  if op == "t" then
    if h > lim then return h, t, 0, t end
    if fresh then
      redis.call("SET", k, 1, "PX", w)
      return 1, w, 1, 0
    end
    h = redis.call("INCR", k)
    if h > lim then
      redis.call("PEXPIRE", k, x)
      return h, t, 0, x
    end
    return h, t, 1, 0
  end
  if x == 0 then
    if h < lim then return h, t, 1, 0 end
    return h, t, 0, t
  end
  if op == "l" and x > lim then return h + x, t, 0, -1 end
  if op == "l" and h + x > lim then return h + x, t, 0, t end
  if fresh then
    redis.call("SET", k, x, "PX", w)
    h = x
  else
    h = redis.call("INCRBY", k, x)
    if reset then
      redis.call("PEXPIRE", k, w)
      t = w
    end
  end
  if h > lim then return h, t, 0, t end
  return h, t, 1, 0
end"#,
    4,
  ))
});

/// The sliding window: the count is the current window's hits plus the previous window's,
/// weighted by how much of it the sliding window still covers (rounded down). Windows are
/// aligned on multiples of the window length since the epoch, on Redis's clock. `reset`: ms
/// until the current window ends. A refused `l` writes nothing; its `retry` is exact to the ms.
/// ARGV: the op letters, then the ops' args (`i`, `g`, `d`, `r` use the store's limit and window
/// from ARGV[2] and ARGV[3]).
pub static SLIDING: LazyLock<Script> = LazyLock::new(|| {
  Script::new(with_loop(
    r#"local ops = ARGV[1]
local slim, swin = tonumber(ARGV[2]), tonumber(ARGV[3])
local tm = redis.call("TIME")
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local function state(k, w)
  local v = redis.call("HMGET", k, "w", "c", "p")
  local cur = math.floor(now / w)
  local idx, c, p = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if idx == nil then
    c, p = 0, 0
  elseif idx == cur - 1 then
    c, p = 0, c
  elseif idx ~= cur then
    c, p = 0, 0
  end
  return idx ~= nil, cur, c, p, now - cur * w
end
local function count(c, p, e, w)
  return c + math.floor(p * (w - e) / w)
end
-- ms until `cost` fits under `lim` (the count only falls with time)
local function retry(c, p, e, w, cost, lim)
  if c + cost <= lim then
    local es = w - (lim - c - cost + 1) * w / p
    return math.floor(es) + 1 - e
  end
  local m = lim - cost
  if c <= m then return w - e end
  local es = w - (m + 1) * w / c
  return w - e + math.floor(es) + 1
end
local function save(k, cur, c, p, e, w)
  redis.call("HSET", k, "w", cur, "c", c, "p", p)
  redis.call("PEXPIRE", k, 2 * w - e)
end
local function one(op, k, x, lim, w)
  if op == "r" then return redis.call("DEL", k), 0, 1, 0 end
  if op ~= "l" and op ~= "h" then x, lim, w = 1, slim, swin end
  local found, cur, c, p, e = state(k, w)
  local n = count(c, p, e, w)
  if op == "g" then
    if not found then return -1, -2, 1, 0 end
    return n, w - e, 1, 0
  elseif op == "d" then
    if not found then return -1, -2, 1, 0 end
    if c > 0 then
      c = c - 1
      save(k, cur, c, p, e, w)
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
    save(k, cur, c + x, p, e, w)
    if n + x <= lim then return n + x, w - e, 1, 0 end
    return n + x, w - e, 0, retry(c + x, p, e, w, 1, lim)
  end
  if x > lim then return n + x, w - e, 0, -1 end
  if n + x > lim then return n + x, w - e, 0, retry(c, p, e, w, x, lim) end
  save(k, cur, c + x, p, e, w)
  return n + x, w - e, 1, 0
end"#,
    4,
  ))
});

/// GCRA, the generic cell rate algorithm: one key per client holding its theoretical arrival
/// time (TAT), on Redis's clock (ms, fractional). Emission interval `T = window / limit`; a call
/// of cost `n` passes when `max(TAT, now) + n·T - now <= burst·T` and then moves TAT there.
/// `hits`: the capacity in use after the call, in calls (`ceil((TAT - now) / T)`); `reset`: ms
/// until the TAT is reached (capacity fully back); `retry`: exact ms until the call would pass.
/// A refused `l` writes nothing. ARGV: the op letters, the store's limit, window, and burst
/// (0: the limit), then the ops' args.
pub static GCRA: LazyLock<Script> = LazyLock::new(|| {
  Script::new(with_loop(
    r#"local ops = ARGV[1]
local slim, swin, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tm = redis.call("TIME")
local now = tonumber(tm[1]) * 1000 + tonumber(tm[2]) / 1000
local function used(d, T)
  if d <= 0 then return 0 end
  return math.ceil(d / T - 1e-9)
end
local function one(op, k, x, lim, w)
  if op == "r" then return redis.call("DEL", k), 0, 1, 0 end
  if op ~= "l" and op ~= "h" then x, lim, w = 1, slim, swin end
  local T = w / lim
  local b = lim
  if burst > 0 then b = burst end
  local tau = b * T
  local stored = tonumber(redis.call("GET", k))
  local tat = stored or now
  if tat < now then tat = now end
  if op == "g" then
    if stored == nil then return -1, -2, 1, 0 end
    return used(tat - now, T), math.ceil(tat - now), 1, 0
  elseif op == "d" then
    if stored == nil then return -1, -2, 1, 0 end
    tat = tat - T
    if tat <= now then
      -- at zero; the key stays (for a window), as the fixed window's does
      redis.call("SET", k, string.format("%.3f", now), "PX", w)
      return 0, 0, 1, 0
    end
    redis.call("SET", k, string.format("%.3f", tat), "PX", math.ceil(tat - now))
    return used(tat - now, T), math.ceil(tat - now), 1, 0
  end
  if x == 0 then
    local nt = tat + T
    if nt - now <= tau + 1e-6 then return used(tat - now, T), math.ceil(tat - now), 1, 0 end
    return used(tat - now, T), math.ceil(tat - now), 0, math.ceil(nt - tau - now)
  end
  local nt = tat + x * T
  if op ~= "l" then
    -- counts always; a refused hit's retry is when the next one passes
    redis.call("SET", k, string.format("%.3f", nt), "PX", math.max(1, math.ceil(nt - now)))
    if nt - now <= tau + 1e-6 then return used(nt - now, T), math.ceil(nt - now), 1, 0 end
    return used(nt - now, T), math.ceil(nt - now), 0, math.max(1, math.ceil(nt + T - tau - now))
  end
  if x > b then return used(tat - now, T) + x, math.ceil(tat - now), 0, -1 end
  if nt - now > tau + 1e-6 then
    return used(nt - now, T), math.ceil(tat - now), 0, math.max(1, math.ceil(nt - tau - now))
  end
  redis.call("SET", k, string.format("%.3f", nt), "PX", math.max(1, math.ceil(nt - now)))
  return used(nt - now, T), math.ceil(nt - now), 1, 0
end"#,
    5,
  ))
});
