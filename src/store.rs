//! The rate-limit store's native half: batches of operations (increment, get, decrement,
//! reset) run as one pipeline of script calls under one deadline, with a per-item fallback.
//! `index.js` collects the calls of an event-loop turn into one batch (one JS→Rust crossing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use fred::prelude::*;
use fred::types::scan::Scanner;
use fred::types::Value;
use futures::StreamExt;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::client::{ClientInner, NativeClient};
use crate::completion::Completions;
use crate::error::{Code, GuardError};
use crate::fallback::{now_ms, Windows};
use crate::scripts::{self, Call};

/// Keys longer than this many bytes are stored as `${prefix}#sha1:<hex of the key>`: a hostile
/// 1 MiB key costs Redis 46 bytes, not 1 MiB. Shorter keys keep rate-limit-redis's exact bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Operation codes of a batch (one byte per key).
const OP_INCREMENT: u8 = 0;
const OP_GET: u8 = 1;
const OP_DECREMENT: u8 = 2;
const OP_RESET: u8 = 3;

/// Result status per item (the first of three numbers): from Redis, from the memory fallback,
/// let through (`allow`), no such key (`get`); negative values are error codes (`Code::as_num`).
const ST_REDIS: f64 = 0.0;
const ST_MEMORY: f64 = 1.0;
const ST_ALLOW: f64 = 2.0;
const ST_NONE: f64 = 3.0;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
  Memory,
  Allow,
  Deny,
}

struct StoreInner {
  client: Arc<ClientInner>,
  prefix: String,
  window_ms: AtomicU64,
  reset_expiry: AtomicBool,
  mode: Mode,
  /// One script call per batch (per slot) rather than one per key.
  batch_script: bool,
  windows: Windows,
}

/// The native half of `RedisStore`.
#[napi]
pub struct NativeStore {
  inner: Arc<StoreInner>,
  done: Completions,
}

/// The Redis key of a rate-limit key: `${prefix}${key}` (rate-limit-redis's bytes) for ordinary
/// keys. Two exceptions, both documented in the README:
/// - keys over `MAX_KEY_BYTES` become `${prefix}#sha1:<hex of the key>`;
/// - a key that would bring its own cluster hash tag (`{...}`, which a client could use to pin
///   every counter to one slot) gets a tag derived from its hash in front:
///   `${prefix}{<8 hex of sha1(key)>}${key}`. A tag that is wholly in the prefix is kept: that
///   is the operator's choice.
pub fn redis_key(prefix: &str, key: &str) -> String {
  if key.len() > MAX_KEY_BYTES {
    return format!("{prefix}#sha1:{}", sha1_smol::Sha1::from(key).digest());
  }
  let full = format!("{prefix}{key}");
  if key.contains('{') || key.contains('}') {
    let prefix_tag = crate::slot::has_tag(prefix.as_bytes());
    if !prefix_tag && crate::slot::has_tag(full.as_bytes()) {
      let h = sha1_smol::Sha1::from(key).digest().to_string();
      return format!("{prefix}{{{}}}{key}", &h[..8]);
    }
  }
  full
}

/// `UNLINK key` in a cluster: sent again while it is redirected (a slot moving during
/// `resetAll`), for at most the command deadline. Resolves the number of keys deleted (0 on error).
async fn unlink_one(client: &ClientInner, key: fred::types::Key) -> f64 {
  let start = std::time::Instant::now();
  let mut delay = std::time::Duration::from_millis(1);
  loop {
    match client.redis.unlink::<i64, _>(key.clone()).await {
      Ok(n) => return n as f64,
      Err(e) if scripts::is_redirect(&e) && start.elapsed() < client.settings.command_timeout => {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_millis(32));
      }
      Err(_) => return 0.0,
    }
  }
}

/// Escape glob characters for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
  let mut out = String::with_capacity(s.len() + 2);
  for c in s.chars() {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
      out.push('\\');
    }
    out.push(c);
  }
  out
}

fn num(v: &Value) -> Option<i64> {
  match v {
    Value::Integer(i) => Some(*i),
    Value::String(s) => s.parse().ok(),
    Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
    Value::Double(d) => Some(*d as i64),
    _ => None,
  }
}

/// `[a, b]` from a script's array reply.
fn pair(v: &Value) -> Option<(Option<i64>, i64)> {
  match v {
    Value::Array(a) if a.len() == 2 => Some((num(&a[0]), num(&a[1])?)),
    _ => None,
  }
}

impl StoreInner {
  fn fallback(&self, op: u8, key: &str, err: Option<&GuardError>, out: &mut [f64]) {
    self
      .client
      .counters
      .fallbacks
      .fetch_add(1, Ordering::Relaxed);
    let now = now_ms();
    let window = self.window_ms.load(Ordering::Relaxed);
    match self.mode {
      Mode::Memory => match op {
        OP_INCREMENT => {
          let (h, t) =
            self
              .windows
              .increment(key, window, self.reset_expiry.load(Ordering::Relaxed), now);
          out.copy_from_slice(&[ST_MEMORY, h as f64, t as f64]);
        }
        OP_GET => match self.windows.get(key, now) {
          Some((h, t)) => out.copy_from_slice(&[ST_MEMORY, h as f64, t as f64]),
          None => out.copy_from_slice(&[ST_NONE, 0.0, 0.0]),
        },
        OP_DECREMENT => {
          self.windows.decrement(key, now);
          out.copy_from_slice(&[ST_MEMORY, 0.0, 0.0]);
        }
        _ => {
          self.windows.reset(key);
          out.copy_from_slice(&[ST_MEMORY, 0.0, 0.0]);
        }
      },
      Mode::Allow => match op {
        OP_INCREMENT => out.copy_from_slice(&[ST_ALLOW, 1.0, window as f64]),
        OP_GET => out.copy_from_slice(&[ST_NONE, 0.0, 0.0]),
        _ => out.copy_from_slice(&[ST_ALLOW, 0.0, 0.0]),
      },
      Mode::Deny => {
        let code = err.map(|e| e.code).unwrap_or(Code::Unavailable);
        let code = if code == Code::Timeout {
          Code::Timeout
        } else {
          Code::Unavailable
        };
        out.copy_from_slice(&[code.as_num(), 0.0, 0.0]);
      }
    }
  }

  /// `resetExpiryOnChange` as the scripts take it.
  fn reset_flag(&self) -> String {
    if self.reset_expiry.load(Ordering::Relaxed) {
      "1"
    } else {
      "0"
    }
    .into()
  }

  /// The single-key script call of rate-limit-redis's kind (`scriptMode: 'per-key'`).
  fn call_for(&self, op: u8, rk: String) -> Call {
    let window = self.window_ms.load(Ordering::Relaxed).to_string();
    match op {
      OP_INCREMENT => Call {
        script: &scripts::INCREMENT,
        keys: vec![rk],
        args: vec![self.reset_flag(), window],
      },
      OP_GET => Call {
        script: &scripts::GET,
        keys: vec![rk],
        args: vec![],
      },
      OP_DECREMENT => Call {
        script: &scripts::DECREMENT,
        keys: vec![rk],
        args: vec![window],
      },
      _ => Call {
        script: &scripts::RESET,
        keys: vec![rk],
        args: vec![],
      },
    }
  }

  /// One `BATCH` script call for the items `idx` (all in one cluster slot); `rks` are the
  /// Redis keys of the whole batch.
  fn batch_call(&self, idx: &[usize], ops: &[u8], rks: &[String]) -> Call {
    let letters: String = idx
      .iter()
      .map(|&i| match ops[i] {
        OP_INCREMENT => 'i',
        OP_GET => 'g',
        OP_DECREMENT => 'd',
        _ => 'r',
      })
      .collect();
    Call {
      script: &scripts::BATCH,
      keys: idx.iter().map(|&i| rks[i].clone()).collect(),
      args: vec![
        self.reset_flag(),
        self.window_ms.load(Ordering::Relaxed).to_string(),
        letters,
      ],
    }
  }

  /// Split a batch into script calls: one `BATCH` call per cluster slot (the whole batch on a
  /// standalone or sentinel server), or one single-key call per item in `per-key` mode.
  fn plan(&self, ops: &[u8], keys: &[String]) -> (Vec<Vec<usize>>, Vec<Call>) {
    let rks: Vec<String> = keys.iter().map(|k| redis_key(&self.prefix, k)).collect();
    let groups: Vec<Vec<usize>> = if self.batch_script {
      crate::slot::groups(rks.iter().map(|k| k.as_bytes()), self.client.is_cluster())
    } else {
      (0..keys.len()).map(|i| vec![i]).collect()
    };
    let calls = groups
      .iter()
      .map(|g| {
        if self.batch_script {
          self.batch_call(g, ops, &rks)
        } else {
          self.call_for(ops[g[0]], rks[g[0]].clone())
        }
      })
      .collect();
    (groups, calls)
  }

  /// Per-item `(hits, pttl)` replies of one call, or the error of the whole call.
  fn replies(&self, v: &Value, group: &[usize], ops: &[u8]) -> Option<Vec<(Option<i64>, i64)>> {
    if self.batch_script {
      match v {
        Value::Array(a) if a.len() == 2 * group.len() => Some(
          (0..group.len())
            .map(|j| (num(&a[2 * j]), num(&a[2 * j + 1]).unwrap_or(-3)))
            .collect(),
        ),
        _ => None,
      }
    } else if ops[group[0]] == OP_RESET {
      Some(vec![(num(v), 0)])
    } else {
      pair(v).map(|p| vec![p])
    }
  }

  async fn run(self: Arc<Self>, ops: Vec<u8>, keys: Vec<String>) -> Vec<f64> {
    let n = keys.len();
    let mut out = vec![0f64; n * 3];
    let client = &self.client;
    if client.is_closed() || !client.usable().await {
      for i in 0..n {
        self.fallback(ops[i], &keys[i], None, &mut out[i * 3..i * 3 + 3]);
      }
      return out;
    }
    let (groups, calls) = self.plan(&ops, &keys);
    let results = match client
      .run(async { Ok(scripts::run_batch(&client.redis, &calls).await) })
      .await
    {
      Ok(r) => r,
      Err(e) => {
        for i in 0..n {
          self.fallback(ops[i], &keys[i], Some(&e), &mut out[i * 3..i * 3 + 3]);
        }
        return out;
      }
    };
    for (group, r) in groups.iter().zip(results.iter()) {
      let replies = match r {
        Ok(v) => self.replies(v, group, &ops).ok_or_else(|| {
          GuardError::new(Code::Redis, "unexpected reply from the rate-limit script")
        }),
        Err(e) => Err(client.on_error(e)),
      };
      for (j, &i) in group.iter().enumerate() {
        let slot = &mut out[i * 3..i * 3 + 3];
        let item = match &replies {
          Ok(r) => r[j],
          Err(e) => {
            self.fallback(ops[i], &keys[i], Some(e), slot);
            continue;
          }
        };
        let parsed = match (ops[i], item) {
          (_, (_, -3)) => None,
          (OP_RESET, (h, _)) => Some([ST_REDIS, h.unwrap_or(0) as f64, 0.0]),
          (OP_GET, (Some(h), t)) if t != -2 && h >= 0 => {
            Some([ST_REDIS, h as f64, t.max(0) as f64])
          }
          (OP_GET, _) => Some([ST_NONE, 0.0, 0.0]),
          (OP_DECREMENT, (h, t)) => Some([ST_REDIS, h.unwrap_or(0).max(0) as f64, t.max(0) as f64]),
          (_, (Some(h), t)) if h >= 1 => Some([ST_REDIS, h as f64, t.max(0) as f64]),
          _ => None,
        };
        match parsed {
          Some(p) => slot.copy_from_slice(&p),
          None => {
            let e = GuardError::new(Code::Redis, "the rate-limit script failed for this key");
            self.fallback(ops[i], &keys[i], Some(&e), slot);
          }
        }
      }
    }
    out
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::slot::key_slot;

  #[test]
  fn keys() {
    assert_eq!(redis_key("rl:", "1.2.3.4"), "rl:1.2.3.4");
    assert_eq!(redis_key("rl:", "a}b{"), "rl:a}b{");
    let k = redis_key("rl:", "{pin}x");
    assert!(k.starts_with("rl:{") && k.ends_with("}{pin}x"), "{k}");
    assert_ne!(
      key_slot(redis_key("rl:", "{pin}a").as_bytes()),
      key_slot(redis_key("rl:", "{pin}b").as_bytes())
    );
    assert_eq!(redis_key("{rl}:", "{pin}x"), "{rl}:{pin}x");
    assert!(redis_key("rl:", &"x".repeat(2000)).starts_with("rl:#sha1:"));
  }
}

#[napi]
impl NativeStore {
  /// A store on `client` for keys `${prefix}${key}`. `onUnavailable`: `memory`, `allow` or
  /// `deny`. `scriptMode`: `batch` (one script call per batch and slot, the default) or
  /// `per-key` (rate-limit-redis's single-key scripts, one call per key).
  #[napi(constructor)]
  pub fn new(
    client: &NativeClient,
    prefix: String,
    on_unavailable: String,
    max_keys: Option<u32>,
    script_mode: Option<String>,
  ) -> Result<Self> {
    let batch_script = match script_mode.as_deref().unwrap_or("batch") {
      "batch" => true,
      "per-key" => false,
      _ => {
        return Err(GuardError::config("option `scriptMode` must be 'batch' or 'per-key'").into())
      }
    };
    let mode = match on_unavailable.as_str() {
      "memory" => Mode::Memory,
      "allow" => Mode::Allow,
      "deny" => Mode::Deny,
      _ => {
        return Err(
          GuardError::config("option `onUnavailable` must be 'memory', 'allow' or 'deny'").into(),
        )
      }
    };
    let client = client.inner.clone();
    let max = max_keys
      .map(|m| m as usize)
      .unwrap_or(client.settings.fallback_max_keys);
    Ok(NativeStore {
      inner: Arc::new(StoreInner {
        client,
        prefix,
        window_ms: AtomicU64::new(60_000),
        reset_expiry: AtomicBool::new(false),
        mode,
        batch_script,
        windows: Windows::new(max),
      }),
      done: Completions::default(),
    })
  }

  /// Set the window length (ms) and `resetExpiryOnChange`.
  #[napi]
  pub fn configure(&self, window_ms: f64, reset_expiry: bool) {
    self
      .inner
      .window_ms
      .store(window_ms.max(1.0) as u64, Ordering::Relaxed);
    self
      .inner
      .reset_expiry
      .store(reset_expiry, Ordering::Relaxed);
  }

  /// Where batch results go: `onDone(id, results)` (see `submit`).
  #[napi]
  pub fn set_done(&self, on_done: Function<'_, FnArgs<(u32, Float64Array)>, ()>) -> Result<()> {
    self.done.set(on_done)
  }

  /// Keep Node's event loop alive while batches are in flight (`true`), or not (`false`).
  #[napi]
  pub fn keep_alive(&self, env: Env, on: bool) -> Result<()> {
    self.done.keep_alive(&env, on)
  }

  /// Submit batch `id`: `ops[i]` (0 increment, 1 get, 2 decrement, 3 reset) on `keys[i]`. The
  /// `onDone` callback gets `(id, results)`: three numbers per key: status (0 Redis, 1 memory,
  /// 2 allowed, 3 no such key, negative: an error code), hits, and ms until the window resets.
  /// Never fails once submitted.
  #[napi]
  pub fn submit(&self, id: u32, ops: Uint8Array, keys: Vec<String>) -> Result<()> {
    if ops.len() != keys.len() {
      return Err(GuardError::new(Code::InvalidArg, "ops and keys differ in length").into());
    }
    let ops = ops.to_vec();
    let n = keys.len();
    let me = self.inner.clone();
    self.done.spawn(id, n, move || me.run(ops, keys))
  }

  /// Delete every key of this store's prefix (SCAN + UNLINK on every primary, never KEYS) and
  /// clear the memory fallback. Resolves the number of Redis keys deleted.
  #[napi]
  pub async fn reset_all(&self) -> Result<f64> {
    let me = &self.inner;
    me.windows.clear();
    if me.prefix.is_empty() {
      return Err(GuardError::new(Code::InvalidArg, "resetAll() needs a non-empty prefix").into());
    }
    if !me.client.usable().await {
      return Err(GuardError::new(Code::Unavailable, "Redis is unavailable").into());
    }
    let pattern = format!("{}*", glob_escape(&me.prefix));
    let cluster = me.client.is_cluster();
    let mut stream = if cluster {
      me.client
        .redis
        .scan_cluster(pattern, Some(1000), None)
        .boxed()
    } else {
      me.client.redis.scan(pattern, Some(1000), None).boxed()
    };
    let mut deleted = 0f64;
    loop {
      let page =
        match tokio::time::timeout(me.client.settings.command_timeout * 4, stream.next()).await {
          Err(_) => return Err(me.client.on_timeout().into()),
          Ok(None) => break,
          Ok(Some(Err(e))) => return Err(me.client.on_error(&e).into()),
          Ok(Some(Ok(p))) => p,
        };
      let mut page = page;
      if let Some(keys) = page.take_results() {
        if cluster {
          // One UNLINK per key (keys of a page may be in different slots), each on its own:
          // in fred a redirection fails a whole pipeline. Redirected ones are sent again.
          let r = futures::future::join_all(keys.into_iter().map(|k| unlink_one(&me.client, k)));
          deleted += r.await.into_iter().sum::<f64>();
        } else {
          let pipe = me.client.redis.pipeline();
          for k in keys {
            let _: std::result::Result<(), _> = pipe.unlink(k).await;
          }
          for r in pipe.try_all::<i64>().await {
            deleted += r.unwrap_or(0) as f64;
          }
        }
      }
      page.next();
    }
    Ok(deleted)
  }

  /// Keys held by the memory fallback.
  #[napi]
  pub fn fallback_size(&self) -> u32 {
    self.inner.windows.len() as u32
  }
}
