//! Lua scripts and the batched way they are run: one fred pipeline of `EVALSHA` per batch,
//! `NOSCRIPT` answered by re-sending only the affected calls once with `EVAL` (which also
//! loads the script on that node). No other error is retried.

use std::sync::LazyLock;

use fred::clients::Client;
use fred::interfaces::{ClientLike, LuaInterface};
use fred::types::{ClusterHash, CustomCommand, Value};

/// A Lua script and its SHA-1.
pub struct Script {
  pub text: &'static str,
  pub sha: String,
}

impl Script {
  fn new(text: &'static str) -> Self {
    Script {
      text,
      sha: sha1_smol::Sha1::from(text).digest().to_string(),
    }
  }
}

/// rate-limit-redis's increment, byte for byte in effect: INCR, and PEXPIRE when a window starts
/// (`PTTL <= 0`) or when `resetExpiryOnChange` is on. Returns `{ hits, pttl }`.
pub static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
  Script::new(
    r#"local totalHits = redis.call("INCR", KEYS[1])
local timeToExpire = redis.call("PTTL", KEYS[1])
if timeToExpire <= 0 or ARGV[1] == "1" then
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

/// Lock grant: `SET NX PX` and, when granted, the next fencing token (same slot: see lock.rs).
/// The fence counter keeps a long TTL so idle keys do not stay forever.
pub static LOCK_ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
  Script::new(
    r#"if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  local f = redis.call("INCR", KEYS[2])
  redis.call("PEXPIRE", KEYS[2], tonumber(ARGV[3]))
  return f
end
return 0"#,
  )
});

/// Compare-and-delete.
pub static LOCK_RELEASE: LazyLock<Script> = LazyLock::new(|| {
  Script::new(
    r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0"#,
  )
});

/// Compare-and-pexpire.
pub static LOCK_EXTEND: LazyLock<Script> = LazyLock::new(|| {
  Script::new(
    r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[2]))
end
return 0"#,
  )
});

/// One script call of a batch.
pub struct Call {
  pub script: &'static Script,
  pub keys: Vec<String>,
  pub args: Vec<String>,
}

/// `EVALSHA sha numkeys keys.. args..` (or `EVAL text ...`) as a custom command, so that it can
/// go into a pipeline; the cluster slot comes from the first key.
fn command(c: &Call, by_sha: bool) -> (CustomCommand, Vec<Value>) {
  let mut args: Vec<Value> = Vec::with_capacity(2 + c.keys.len() + c.args.len());
  args.push(if by_sha {
    c.script.sha.as_str().into()
  } else {
    c.script.text.into()
  });
  args.push((c.keys.len() as i64).into());
  args.extend(c.keys.iter().map(|k| Value::from(k.as_str())));
  args.extend(c.args.iter().map(|a| Value::from(a.as_str())));
  let name = if by_sha { "EVALSHA" } else { "EVAL" };
  (
    CustomCommand::new_static(name, ClusterHash::Offset(2), false),
    args,
  )
}

fn is_noscript(e: &fred::error::Error) -> bool {
  e.details().starts_with("NOSCRIPT")
}

/// Run `calls` as one pipeline; each call gets its own result. `NOSCRIPT` calls are re-sent
/// once with `EVAL`. Deadlines are applied by the caller around this whole future.
pub async fn run_batch(client: &Client, calls: &[Call]) -> Vec<Result<Value, fred::error::Error>> {
  if calls.len() == 1 {
    // The cheapest path for a batch of one: no pipeline bookkeeping.
    let c = &calls[0];
    let r: Result<Value, _> = client
      .evalsha(c.script.sha.as_str(), c.keys.clone(), c.args.clone())
      .await;
    return match r {
      Err(e) if is_noscript(&e) => vec![
        client
          .eval(c.script.text, c.keys.clone(), c.args.clone())
          .await,
      ],
      r => vec![r],
    };
  }
  let pipe = client.pipeline();
  for c in calls {
    let (cmd, args) = command(c, true);
    let _: Result<(), _> = pipe.custom(cmd, args).await;
  }
  let mut results: Vec<Result<Value, fred::error::Error>> = pipe.try_all::<Value>().await;
  if results.len() != calls.len() {
    // A whole-pipeline failure (e.g. the connection dropped): one error for every call.
    let e = results
      .into_iter()
      .find_map(|r| r.err())
      .unwrap_or_else(|| {
        fred::error::Error::new(fred::error::ErrorKind::Unknown, "pipeline lost replies")
      });
    return calls.iter().map(|_| Err(e.clone())).collect();
  }
  let retry: Vec<usize> = results
    .iter()
    .enumerate()
    .filter(|(_, r)| matches!(r, Err(e) if is_noscript(e)))
    .map(|(i, _)| i)
    .collect();
  if !retry.is_empty() {
    let pipe = client.pipeline();
    for &i in &retry {
      let c = &calls[i];
      let (cmd, args) = command(c, false);
      let _: Result<(), _> = pipe.custom(cmd, args).await;
    }
    let again = pipe.try_all::<Value>().await;
    for (j, r) in again.into_iter().enumerate() {
      if let Some(&i) = retry.get(j) {
        results[i] = r;
      }
    }
  }
  results
}

/// `resetKey`: DEL (a script so that it batches with the others).
pub static RESET: LazyLock<Script> =
  LazyLock::new(|| Script::new(r#"return redis.call("DEL", KEYS[1])"#));
