//! Lua scripts and the batched way they are run: the calls of a batch handed to fred together,
//! `NOSCRIPT` answered by re-sending only the affected calls once with `EVAL` (which also
//! loads the script on that node), and in a cluster a redirected call (`MOVED`/`ASK`/`TRYAGAIN`,
//! which Redis did not run) sent again within a budget (see [`send`]). No other error is retried.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};

/// A Lua script and its SHA-1.
pub struct Script {
  pub text: &'static str,
  pub sha: String,
}

impl Script {
  /// A script of `text` (its SHA-1 computed once).
  pub fn new(text: &'static str) -> Self {
    Script {
      text,
      sha: sha1_smol::Sha1::from(text).digest().to_string(),
    }
  }
}

/// rate-limit-redis's increment (v4.3 and v6), the same logic: `PTTL <= 0` (no key, or a key
/// left without a TTL, e.g. "-1" by rate-limit-redis's plain `DECR` after expiry) starts a new
/// window with `SET 1 PX`; otherwise INCR, and PEXPIRE when `resetExpiryOnChange` is on.
/// The end of every per-op loop body of the batch scripts: an op that failed answers -1 for
/// itself only (-2 when Redis is out of memory: the caller's `onUnavailable` policy decides),
/// and `READONLY` (a demoted primary) fails the whole call. One text, spliced with `concat!`.
macro_rules! op_outcome {
  () => {
    r#"  if ok then
    out[i] = r
  else
    local e = tostring(type(r) == "table" and r.err or r)
    if string.find(e, "READONLY", 1, true) then
      return redis.error_reply(e)
    elseif string.find(e, "OOM", 1, true) then
      out[i] = -2
    else
      out[i] = -1
    end
  end
"#
  };
}

/// Returns `{ hits, pttl }`.
pub static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
  Script::new(
    r#"local timeToExpire = redis.call("PTTL", KEYS[1])
if timeToExpire <= 0 then
  redis.call("SET", KEYS[1], 1, "PX", tonumber(ARGV[2]))
  return { 1, tonumber(ARGV[2]) }
end
local totalHits = redis.call("INCR", KEYS[1])
if ARGV[1] == "1" then
  redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[2]))
  timeToExpire = tonumber(ARGV[2])
end
return { totalHits, timeToExpire }"#,
  )
});

/// `{ hits or false, pttl }`.
pub static GET: LazyLock<Script> = LazyLock::new(|| {
  Script::new(
    r#"local totalHits = redis.call("GET", KEYS[1])
local timeToExpire = redis.call("PTTL", KEYS[1])
return { totalHits, timeToExpire }"#,
  )
});

/// Decrement that never goes below zero and never leaves the key without a TTL.
/// Returns `{ hits, pttl }` (`{ -1, -2 }` when there is no such key).
pub static DECREMENT: LazyLock<Script> = LazyLock::new(|| {
  Script::new(
    r#"local v = tonumber(redis.call("GET", KEYS[1]))
if v == nil then return { -1, -2 } end
if v > 0 then v = redis.call("DECR", KEYS[1]) end
local t = redis.call("PTTL", KEYS[1])
if t < 0 then
  redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[1]))
  t = tonumber(ARGV[1])
end
return { v, t }"#,
  )
});

/// Every lock operation of a batch in one script call (one slot; see lock.rs). `ARGV[1]` has
/// one letter per op, `ARGV[2]` the fence counters' TTL (ms); then each op takes, in order, only
/// the keys and args its kind uses:
/// - `a` grant (keys: the lock, its fence counter; args: token, TTL ms, fence floor): `SET NX PX`
///   and, when granted, the next fencing token — above the floor, the largest fence the caller
///   has seen or issued itself (local grants while Redis was down, or a counter lost in a Redis
///   restart); the counter keeps a TTL of `ARGV[2]` ms; 0 when held;
/// - `b` grant without a fencing token (key: the lock; args: token, TTL ms): `SET NX PX` alone;
///   1 when granted, 0 when held;
/// - `r` compare-and-delete (key: the lock; arg: token), `e` compare-and-pexpire (key: the lock;
///   args: token, TTL ms): 1 when the token still owned the lock.
///
/// A failing op yields -1 for that op only (-2 when Redis is out of memory: the caller's
/// `onUnavailable` policy decides); `READONLY` (a demoted primary) fails the call.
pub static LOCK_BATCH: LazyLock<Script> = LazyLock::new(|| {
  Script::new(concat!(
    r#"local ops = ARGV[1]
local fttl = tonumber(ARGV[2])
local function bare(lk, tok, ttl)
  if redis.call("SET", lk, tok, "NX", "PX", ttl) then return 1 end
  return 0
end
local function grant(lk, fk, tok, ttl, floor)
  if bare(lk, tok, ttl) == 0 then return 0 end
  local f = redis.call("INCR", fk)
  floor = tonumber(floor)
  if floor and f <= floor then
    f = floor + 1
    redis.call("SET", fk, string.format("%d", f))
  end
  redis.call("PEXPIRE", fk, fttl)
  return f
end
local function release(lk, tok)
  if redis.call("GET", lk) ~= tok then return 0 end
  return redis.call("DEL", lk)
end
local function extend(lk, tok, ttl)
  if redis.call("GET", lk) ~= tok then return 0 end
  return redis.call("PEXPIRE", lk, tonumber(ttl))
end
local out = {}
local k, a = 1, 3
for i = 1, #ops do
  local op = string.sub(ops, i, i)
  local ok, r
  if op == "a" then
    ok, r = pcall(grant, KEYS[k], KEYS[k + 1], ARGV[a], ARGV[a + 1], ARGV[a + 2])
    k, a = k + 2, a + 3
  elseif op == "r" then
    ok, r = pcall(release, KEYS[k], ARGV[a])
    k, a = k + 1, a + 1
  elseif op == "b" then
    ok, r = pcall(bare, KEYS[k], ARGV[a], ARGV[a + 1])
    k, a = k + 1, a + 2
  else
    ok, r = pcall(extend, KEYS[k], ARGV[a], ARGV[a + 1])
    k, a = k + 1, a + 2
  end
"#,
    op_outcome!(),
    r#"end
return out"#
  ))
});

/// Every query-cache operation of a batch in one script call (one slot; see cache.rs).
/// `ARGV[1]` has one letter per op, one key per op. `ARGV[2]`: "1" when this script may read
/// tag keys itself (a standalone or sentinel server; in a cluster they may live in other
/// slots), `ARGV[3]`: the prefix of tag keys, `ARGV[4]`: the channel that hears of changes ("":
/// none), `ARGV[5]`: the id of the sending cache (so that it can skip its own news). Then each
/// op takes, in order, only the args its kind uses:
/// - `g` `GET`: false when there is none (or the key holds another type, as `MGET` answers);
///   the plain value; or, for an entry with tags or grace
///   (a value that starts with `"\0rg1\n"`, then a JSON header line `{"g":graceMs,"t":{tag:
///   version}}`), `{value, stale, unchecked}`: `stale` 1 once less than `graceMs` of its TTL is
///   left, `unchecked` 1 when its tags are left to the caller. An entry a tag of which was
///   invalidated since it was written is unlinked and reads as none;
/// - `s` `SET key value PX ttl` (args: value, TTL ms): 1 — the plain value with a TTL, what
///   `SETEX key ttl value` writes;
/// - `d` `UNLINK`: the number of keys deleted (0 or 1);
/// - `v` the version of a tag (its key): a number, 0 when it was never invalidated;
/// - `i` invalidate a tag: `INCR` its version (kept for two years): the new version;
/// - `l` `SET key token NX PX ttl` (args: token, TTL ms): 1 when taken; when held, the
///   holder's token (0 if it just expired);
/// - `u` delete the key if it holds the token (arg: token): 1 or 0.
///
/// Writes and invalidations of the batch are published on the channel as one JSON message
/// `{"o":id,"k":[keys],"t":[tags]}`; when that fails (an ACL user without the channel), the
/// reply has one more element, 0. A failing op (e.g. `WRONGTYPE`) yields -1 for that op
/// only (-2 when Redis is out of memory: the caller's `onUnavailable` policy decides);
/// `READONLY` (a demoted primary) fails the call.
pub static CACHE_BATCH: LazyLock<Script> = LazyLock::new(|| {
  Script::new(concat!(
    r#"local ops = ARGV[1]
local check = ARGV[2] == "1"
local tagp = ARGV[3]
local out = {}
local changed = {}
local tags = {}
local a = 6
local function get(k)
  local ok, v = pcall(redis.call, "GET", k)
  if not ok then return false end
  if not v or string.byte(v, 1) ~= 0 or string.sub(v, 1, 5) ~= "\0rg1\n" then return v end
  local nl = string.find(v, "\n", 6, true)
  local ok, h = pcall(cjson.decode, string.sub(v, 6, (nl or 6) - 1))
  if not nl or not ok or type(h) ~= "table" then return v end
  if check and type(h.t) == "table" then
    for t, ver in pairs(h.t) do
      if tonumber(redis.call("GET", tagp .. t) or "0") ~= tonumber(ver) then
        redis.call("UNLINK", k)
        return false
      end
    end
  end
  local stale = 0
  if tonumber(h.g or 0) > 0 and redis.call("PTTL", k) < tonumber(h.g) then stale = 1 end
  return {v, stale, (check or type(h.t) ~= "table") and 0 or 1}
end
for i = 1, #ops do
  local op = string.sub(ops, i, i)
  local k = KEYS[i]
  local ok, r
  if op == "g" then
    ok, r = pcall(get, k)
  elseif op == "s" then
    ok, r = pcall(redis.call, "SET", k, ARGV[a], "PX", ARGV[a + 1])
    if ok then r = 1; changed[#changed + 1] = k end
    a = a + 2
  elseif op == "d" then
    ok, r = pcall(redis.call, "UNLINK", k)
    if ok then changed[#changed + 1] = k end
  elseif op == "v" then
    ok, r = pcall(redis.call, "GET", k)
    if ok then r = tonumber(r or "0") or 0 end
  elseif op == "i" then
    ok, r = pcall(redis.call, "INCR", k)
    if ok then
      redis.call("PEXPIRE", k, 63072000000)
      tags[#tags + 1] = string.sub(k, #tagp + 1)
    end
  elseif op == "l" then
    ok, r = pcall(redis.call, "SET", k, ARGV[a], "NX", "PX", ARGV[a + 1])
    if ok then
      if r then r = 1 else r = redis.call("GET", k) or 0 end
    end
    a = a + 2
  else
    ok, r = pcall(redis.call, "GET", k)
    if ok then
      if r == ARGV[a] then redis.call("DEL", k); r = 1 else r = 0 end
    end
    a = a + 1
  end
"#,
    op_outcome!(),
    r#"end
if ARGV[4] ~= "" and (#changed > 0 or #tags > 0) then
  local m = {o = ARGV[5]}
  if #changed > 0 then m.k = changed end
  if #tags > 0 then m.t = tags end
  if not pcall(redis.call, "PUBLISH", ARGV[4], cjson.encode(m)) then out[#ops + 1] = 0 end
end
return out"#
  ))
});

/// Every idempotency-key operation of a batch in one script call (one slot; see
/// idempotency.rs). `ARGV[1]` has one letter per op, one key per op. A record is a string:
/// `p:TOKEN:FINGERPRINT` while in progress (a lease: its TTL is the lock TTL) and
/// `c:N:FINGERPRINT` followed by the result once completed (N the fingerprint's length; its TTL
/// the retention).
/// Then each op takes, in order, only the args its kind uses:
/// - `c` claim (args: token, fingerprint, lock TTL ms): no record: write `p:...` with `PX`, `{0}`
///   (acquired); in progress with the same fingerprint: `{1, pttl}`; completed with the same
///   fingerprint: `{2, result}`; another fingerprint: `{3}` (mismatch);
/// - `f` complete (args: token, result, TTL ms): when the record is `p:` with this token, write
///   `c:...` (the fingerprint of the record) with `PX`: 1; else 0 (the lease was lost);
/// - `r` release (arg: token): delete the record if it is `p:` with this token: 1 or 0;
/// - `e` extend (args: token, lock TTL ms): `PEXPIRE` the record if it is `p:` with this token:
///   1 or 0.
///
/// A failing op (a key of another type, a value that is no record) yields -1 for that op only
/// (-2 when Redis is out of memory: the caller's `onUnavailable` policy decides); `READONLY`
/// (a demoted primary) fails the call.
pub static IDEM_BATCH: LazyLock<Script> = LazyLock::new(|| {
  Script::new(concat!(
    r#"local ops = ARGV[1]
local out = {}
local a = 2
local function claim(k, tok, fp, ttl)
  local v = redis.call("GET", k)
  if not v then
    redis.call("SET", k, "p:" .. tok .. ":" .. fp, "PX", ttl)
    return {0}
  end
  local kind = string.sub(v, 1, 2)
  local e = string.find(v, ":", 3, true)
  if not e then return -1 end
  if kind == "p:" then
    if string.sub(v, e + 1) ~= fp then return {3} end
    return {1, redis.call("PTTL", k)}
  elseif kind == "c:" then
    local n = tonumber(string.sub(v, 3, e - 1))
    if not n then return -1 end
    if string.sub(v, e + 1, e + n) ~= fp then return {3} end
    return {2, string.sub(v, e + n + 1)}
  end
  return -1
end
local function held(k, tok)
  local v = redis.call("GET", k)
  local pre = "p:" .. tok .. ":"
  if v and string.sub(v, 1, #pre) == pre then return string.sub(v, #pre + 1) end
  return nil
end
local function complete(k, tok, res, ttl)
  local fp = held(k, tok)
  if not fp then return 0 end
  redis.call("SET", k, "c:" .. #fp .. ":" .. fp .. res, "PX", ttl)
  return 1
end
local function release(k, tok)
  if not held(k, tok) then return 0 end
  redis.call("DEL", k)
  return 1
end
local function extend(k, tok, ttl)
  if not held(k, tok) then return 0 end
  redis.call("PEXPIRE", k, ttl)
  return 1
end
for i = 1, #ops do
  local op = string.sub(ops, i, i)
  local k = KEYS[i]
  local ok, r
  if op == "c" then
    ok, r = pcall(claim, k, ARGV[a], ARGV[a + 1], ARGV[a + 2])
    a = a + 3
  elseif op == "f" then
    ok, r = pcall(complete, k, ARGV[a], ARGV[a + 1], ARGV[a + 2])
    a = a + 3
  elseif op == "r" then
    ok, r = pcall(release, k, ARGV[a])
    a = a + 1
  else
    ok, r = pcall(extend, k, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
"#,
    op_outcome!(),
    r#"end
return out"#
  ))
});

/// One script call of a batch.
#[derive(Clone)]
pub struct Call {
  /// The script; None: a plain `MGET keys` (no args), for reads that need no script.
  pub script: Option<&'static Script>,
  pub keys: Vec<String>,
  pub args: Vec<String>,
}

/// The cluster slot of a call: its first key's. Every script touches one slot only (the lock's
/// fence key is built with `slot::companion_key`; store and cache keys are single keys).
fn call_slot(c: &Call) -> u16 {
  c.keys
    .first()
    .map(|k| crate::redis::slot::key_slot(k.as_bytes()))
    .unwrap_or(0)
}

/// `EVALSHA sha numkeys keys.. args..` (or `EVAL text ...`, or `MGET keys..` for a call without
/// a script) as a custom command, so that it can go into a pipeline. The slot is computed here and given as `ClusterHash::Custom`: fred 10.1
/// ignores every other `ClusterHash` of a custom command and hashes its first string argument
/// (the SHA), which sends every call to one node and gets `MOVED` for two thirds of them.
fn command(c: &Call, by_sha: bool) -> (CustomCommand, Vec<Value>) {
  let hash = ClusterHash::Custom(call_slot(c));
  let Some(script) = c.script else {
    let keys = c.keys.iter().map(|k| Value::from(k.as_str())).collect();
    return (CustomCommand::new_static("MGET", hash, false), keys);
  };
  let mut args: Vec<Value> = Vec::with_capacity(2 + c.keys.len() + c.args.len());
  args.push(if by_sha {
    script.sha.as_str().into()
  } else {
    script.text.into()
  });
  args.push((c.keys.len() as i64).into());
  args.extend(c.keys.iter().map(|k| Value::from(k.as_str())));
  args.extend(c.args.iter().map(|a| Value::from(a.as_str())));
  let name = if by_sha { "EVALSHA" } else { "EVAL" };
  (CustomCommand::new_static(name, hash, false), args)
}

fn is_noscript(e: &fred::error::Error) -> bool {
  e.details().starts_with("NOSCRIPT")
}

/// Whether `e` proves that the command did not run and may be sent again: a `MOVED` or `ASK`
/// that fred did not follow (the client sets `max_redirections: 0`, see client.rs, so fred
/// answers "Too many redirections." instead of re-sending — after a `MOVED` it has already
/// refreshed its slot table), or `TRYAGAIN` (a multi-key script on a slot whose keys are half
/// migrated). Redis runs none of these commands, so sending one again cannot count twice.
pub fn is_redirect(e: &fred::error::Error) -> bool {
  (*e.kind() == fred::error::ErrorKind::Routing && e.details().contains("Too many redirections"))
    || e.details().starts_with("TRYAGAIN")
}

/// One call. In a cluster, a call that was redirected ([`is_redirect`]) is sent again — at
/// once, then after 1, 2, 4 ... 32 ms — for at most 3/4 of the command deadline, so that a slot
/// migration is absorbed here and never looks like a timeout (which would open the circuit).
async fn send(client: &Client, c: &Call, by_sha: bool) -> Result<Value, fred::error::Error> {
  let start = Instant::now();
  let mut delay = Duration::ZERO;
  loop {
    let (cmd, args) = command(c, by_sha);
    match client.custom(cmd, args).await {
      Err(e) if is_redirect(&e) => {
        let budget = client.perf_config().default_command_timeout * 3 / 4;
        if start.elapsed() + delay >= budget {
          return Err(e);
        }
        if !delay.is_zero() {
          tokio::time::sleep(delay).await;
        }
        delay = (delay * 2).clamp(Duration::from_millis(1), Duration::from_millis(32));
      }
      r => return r,
    }
  }
}

/// Run `calls`: one fred pipeline on a standalone or sentinel server, one command per call in a
/// cluster (see [`send`]). fred 10.1 still writes (flushes) each script command on its own. Each
/// call gets its own result. `NOSCRIPT` calls are re-sent once with `EVAL`. Deadlines are
/// applied by the caller around this whole future.
pub async fn run_batch(client: &Client, calls: &[Call]) -> Vec<Result<Value, fred::error::Error>> {
  let mut results: Vec<Result<Value, fred::error::Error>> = if calls.len() == 1 {
    vec![send(client, &calls[0], true).await]
  } else if !client.is_clustered() {
    // One router message and one responder for all the calls (no per-call future, channel or
    // timer). In a cluster each call is sent on its own: fred fails a whole pipeline on a
    // redirection, and `send` retries redirected calls one by one.
    let pipe = client.pipeline();
    for c in calls {
      let (cmd, args) = command(c, true);
      let _: Result<(), _> = pipe.custom(cmd, args).await;
    }
    pipe.try_all::<Value>().await
  } else {
    futures::future::join_all(calls.iter().map(|c| send(client, c, true))).await
  };
  let retry: Vec<usize> = results
    .iter()
    .enumerate()
    .filter(|(_, r)| matches!(r, Err(e) if is_noscript(e)))
    .map(|(i, _)| i)
    .collect();
  if !retry.is_empty() {
    let again =
      futures::future::join_all(retry.iter().map(|&i| send(client, &calls[i], false))).await;
    for (j, r) in again.into_iter().enumerate() {
      results[retry[j]] = r;
    }
  }
  results
}

/// `resetKey`: DEL (a script so that it batches with the others).
pub static RESET: LazyLock<Script> =
  LazyLock::new(|| Script::new(r#"return redis.call("DEL", KEYS[1])"#));

#[cfg(test)]
mod tests {
  use super::*;
  use fred::error::{Error, ErrorKind};

  #[test]
  fn only_proofs_of_not_run_are_redirects() {
    assert!(is_redirect(&Error::new(
      ErrorKind::Routing,
      "Too many redirections."
    )));
    assert!(is_redirect(&Error::new(
      ErrorKind::Unknown,
      "TRYAGAIN Multiple keys request during rehashing of slot"
    )));
    // fred's answer to a redirected command without write attempts left — also given to
    // commands replayed after a reconnect, which may have run: never re-sent.
    assert!(!is_redirect(&Error::new(
      ErrorKind::Unknown,
      "Too many failed write attempts."
    )));
    assert!(!is_redirect(&Error::new(
      ErrorKind::Routing,
      "Failed to route command."
    )));
    assert!(!is_redirect(&Error::new(ErrorKind::IO, "Connection reset")));
  }

  #[test]
  fn a_call_hashes_to_its_first_key() {
    let c = Call {
      script: Some(&LOCK_BATCH),
      keys: vec![
        "lock:a".into(),
        crate::redis::slot::companion_key("lock:", "lock:a", ":fence"),
      ],
      args: vec![],
    };
    let (cmd, args) = command(&c, true);
    assert_eq!(
      cmd.cluster_hash,
      ClusterHash::Custom(crate::redis::slot::key_slot(b"lock:a"))
    );
    assert_eq!(args.len(), 4);
  }
}
