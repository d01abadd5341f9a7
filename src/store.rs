//! The rate-limit store (`RedisStore`, lib/store.js) as a feature of the batch core
//! (`batch/mod.rs`): increment, get, decrement and reset, one `BATCH` script call per batch and
//! cluster slot (or rate-limit-redis's single-key scripts, `scriptMode: 'per-key'`), answered
//! from the bounded memory windows (`fallback/`) under the `onUnavailable` policy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use fred::types::Value;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::batch::{CallIn, Failure, Feature, NativeBatcher, Out};
use crate::connection::client::{ClientInner, NativeClient};
use crate::error::{Code, GuardError};
use crate::fallback::Windows;
use crate::redis::scripts::{self, Call};

/// Keys longer than this many bytes are stored as `${prefix}#sha1:<hex of the key>`: a hostile
/// 1 MiB key costs Redis 46 bytes, not 1 MiB. Shorter keys keep rate-limit-redis's exact bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Store op: count a hit.
#[napi]
pub const STORE_INCREMENT: u32 = 0;
/// Store op: read a key's count.
#[napi]
pub const STORE_GET: u32 = 1;
/// Store op: undo one hit.
#[napi]
pub const STORE_DECREMENT: u32 = 2;
/// Store op: forget a key.
#[napi]
pub const STORE_RESET: u32 = 3;

/// Result status (the first of three numbers): counted in Redis.
#[napi]
pub const STORE_REDIS: u32 = 0;
/// Result status: counted by the memory fallback.
#[napi]
pub const STORE_MEMORY: u32 = 1;
/// Result status: let through, not counted (`onUnavailable: 'allow'`).
#[napi]
pub const STORE_ALLOW: u32 = 2;
/// Result status of a `get`: no such key.
#[napi]
pub const STORE_NONE: u32 = 3;

const OP_INCREMENT: u8 = STORE_INCREMENT as u8;
const OP_GET: u8 = STORE_GET as u8;
const OP_DECREMENT: u8 = STORE_DECREMENT as u8;
const OP_RESET: u8 = STORE_RESET as u8;
const ST_REDIS: f64 = STORE_REDIS as f64;
const ST_MEMORY: f64 = STORE_MEMORY as f64;
const ST_ALLOW: f64 = STORE_ALLOW as f64;
const ST_NONE: f64 = STORE_NONE as f64;

/// The store's `onUnavailable`.
#[derive(Clone, Copy, PartialEq)]
enum Policy {
  Memory,
  Allow,
  Deny,
}

struct Store {
  client: Arc<ClientInner>,
  prefix: String,
  window_ms: AtomicU64,
  reset_expiry: AtomicBool,
  policy: Policy,
  /// One script call per batch (per slot) rather than one per key.
  batch_script: bool,
  windows: Windows,
}

/// One call: the op, the caller's key (for the fallback) and its Redis key.
struct StoreOp {
  op: u8,
  key: String,
  rk: String,
}

/// The native half of `RedisStore`.
#[napi]
pub struct NativeStore {
  inner: Arc<Store>,
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
    let prefix_tag = crate::redis::slot::has_tag(prefix.as_bytes());
    if !prefix_tag && crate::redis::slot::has_tag(full.as_bytes()) {
      let h = sha1_smol::Sha1::from(key).digest().to_string();
      return format!("{prefix}{{{}}}{key}", &h[..8]);
    }
  }
  full
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

impl Store {
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
  fn call_for(&self, op: &StoreOp) -> Call {
    let window = self.window_ms.load(Ordering::Relaxed).to_string();
    let keys = vec![op.rk.clone()];
    match op.op {
      OP_INCREMENT => Call {
        script: Some(&scripts::INCREMENT),
        keys,
        args: vec![self.reset_flag(), window],
      },
      OP_GET => Call {
        script: Some(&scripts::GET),
        keys,
        args: vec![],
      },
      OP_DECREMENT => Call {
        script: Some(&scripts::DECREMENT),
        keys,
        args: vec![window],
      },
      _ => Call {
        script: Some(&scripts::RESET),
        keys,
        args: vec![],
      },
    }
  }

  /// One `BATCH` script call for the ops `idx` (all in one cluster slot).
  fn batch_call(&self, ops: &[&StoreOp], idx: &[usize]) -> Call {
    let letters: String = idx
      .iter()
      .map(|&i| match ops[i].op {
        OP_INCREMENT => 'i',
        OP_GET => 'g',
        OP_DECREMENT => 'd',
        _ => 'r',
      })
      .collect();
    Call {
      script: Some(&scripts::BATCH),
      keys: idx.iter().map(|&i| ops[i].rk.clone()).collect(),
      args: vec![
        self.reset_flag(),
        self.window_ms.load(Ordering::Relaxed).to_string(),
        letters,
      ],
    }
  }
}

impl Feature for Store {
  const NAME: &'static str = "rate_limit";
  type Op = StoreOp;
  const WIDTH_IN: usize = 0;
  const WIDTH_OUT: usize = 3;

  fn client(&self) -> &Arc<ClientInner> {
    &self.client
  }

  fn parse(&self, call: CallIn<'_>) -> std::result::Result<StoreOp, GuardError> {
    if call.op > OP_RESET {
      return Err(GuardError::new(Code::InvalidArg, "bad store operation"));
    }
    Ok(StoreOp {
      op: call.op,
      key: call.key.to_string(),
      rk: redis_key(&self.prefix, call.key),
    })
  }

  /// One `BATCH` call per cluster slot (the whole batch on a standalone or sentinel server),
  /// or one single-key call per op in `per-key` mode.
  fn plan(&self, ops: &[&StoreOp], cluster: bool) -> (Vec<Vec<usize>>, Vec<Call>) {
    if self.batch_script {
      let groups = crate::redis::slot::groups(ops.iter().map(|o| o.rk.as_bytes()), cluster);
      let calls = groups.iter().map(|g| self.batch_call(ops, g)).collect();
      (groups, calls)
    } else {
      let groups = (0..ops.len()).map(|i| vec![i]).collect();
      (groups, ops.iter().map(|o| self.call_for(o)).collect())
    }
  }

  /// `BATCH`: two numbers per op (`hits`, `pttl`; `pttl` -3 when the op failed); the
  /// single-key scripts: a `{ hits, pttl }` pair, or the number of keys a reset deleted.
  fn split<'v>(&self, first: &StoreOp, n: usize, reply: &'v Value) -> Option<Vec<&'v [Value]>> {
    match reply {
      Value::Array(a) if self.batch_script && a.len() == 2 * n => Some(a.chunks(2).collect()),
      _ if self.batch_script => None,
      v if first.op == OP_RESET => Some(vec![std::slice::from_ref(v)]),
      Value::Array(a) if a.len() == 2 && num(&a[1]).is_some() => Some(vec![&a[..]]),
      _ => None,
    }
  }

  fn apply(
    &self,
    op: &StoreOp,
    reply: &[Value],
    _now: u64,
    out: &mut Out<'_>,
  ) -> std::result::Result<(), Failure> {
    let h = reply.first().and_then(num);
    let t = match reply.get(1) {
      Some(v) => num(v).unwrap_or(-3),
      None => 0,
    };
    let parsed = match (op.op, h, t) {
      (_, _, -3) => None,
      (OP_RESET, h, _) => Some([ST_REDIS, h.unwrap_or(0) as f64, 0.0]),
      (OP_GET, Some(h), t) if t != -2 && h >= 0 => Some([ST_REDIS, h as f64, t.max(0) as f64]),
      (OP_GET, _, _) => Some([ST_NONE, 0.0, 0.0]),
      (OP_DECREMENT, h, t) => Some([ST_REDIS, h.unwrap_or(0).max(0) as f64, t.max(0) as f64]),
      (_, Some(h), t) if h >= 1 => Some([ST_REDIS, h as f64, t.max(0) as f64]),
      _ => None,
    };
    match parsed {
      Some(p) => {
        out.set(&p);
        Ok(())
      }
      None => Err(Failure::Refused(GuardError::new(
        Code::Redis,
        "the rate-limit script failed for this key",
      ))),
    }
  }

  /// The policy's answer, whatever went wrong (a rate limiter falls back rather than fail a
  /// request; `'deny'` reports a timeout as such and everything else as unavailable).
  fn unavailable(&self, op: &StoreOp, why: &Failure, now: u64, out: &mut Out<'_>) {
    self
      .client
      .counters
      .fallbacks
      .fetch_add(1, Ordering::Relaxed);
    let window = self.window_ms.load(Ordering::Relaxed);
    match self.policy {
      Policy::Memory => match op.op {
        OP_INCREMENT => {
          let reset = self.reset_expiry.load(Ordering::Relaxed);
          let (h, t) = self.windows.increment(&op.key, window, reset, now);
          out.set(&[ST_MEMORY, h as f64, t as f64]);
        }
        OP_GET => match self.windows.get(&op.key, now) {
          Some((h, t)) => out.set(&[ST_MEMORY, h as f64, t as f64]),
          None => out.set(&[ST_NONE, 0.0, 0.0]),
        },
        OP_DECREMENT => {
          self.windows.decrement(&op.key, now);
          out.set(&[ST_MEMORY, 0.0, 0.0]);
        }
        _ => {
          self.windows.reset(&op.key);
          out.set(&[ST_MEMORY, 0.0, 0.0]);
        }
      },
      Policy::Allow => match op.op {
        OP_INCREMENT => out.set(&[ST_ALLOW, 1.0, window as f64]),
        OP_GET => out.set(&[ST_NONE, 0.0, 0.0]),
        _ => out.set(&[ST_ALLOW, 0.0, 0.0]),
      },
      Policy::Deny => out.fail(match why.code() {
        Code::Timeout => Code::Timeout,
        _ => Code::Unavailable,
      }),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::redis::slot::key_slot;

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
    let policy = crate::batch::policy(
      &on_unavailable,
      &[
        ("memory", Policy::Memory),
        ("allow", Policy::Allow),
        ("deny", Policy::Deny),
      ],
    )?;
    let client = client.inner.clone();
    let max = max_keys
      .map(|m| m as usize)
      .unwrap_or(client.settings.fallback_max_keys);
    Ok(NativeStore {
      inner: Arc::new(Store {
        client,
        prefix,
        window_ms: AtomicU64::new(60_000),
        reset_expiry: AtomicBool::new(false),
        policy,
        batch_script,
        windows: Windows::new(max),
      }),
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

  /// The batcher of this store: ops `STORE_*` on keys, no numbers in; three numbers out per
  /// call: status (`STORE_REDIS`, `STORE_MEMORY`, `STORE_ALLOW`, `STORE_NONE`; negative: an
  /// error code), hits, and ms until the window resets.
  #[napi]
  pub fn batcher(&self) -> NativeBatcher {
    NativeBatcher::new(self.inner.clone())
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
    Ok(crate::redis::scan::delete_prefix(&me.client, &me.prefix).await?)
  }

  /// Keys held by the memory fallback.
  #[napi]
  pub fn fallback_size(&self) -> u32 {
    self.inner.windows.len() as u32
  }
}
