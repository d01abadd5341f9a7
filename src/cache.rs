//! The query cache (`Cache`, lib/cache.js) as a feature of the batch core (`batch/mod.rs`):
//! get, set (value bytes, TTL ms), delete and has, one `CACHE_BATCH` script call per batch and
//! cluster slot, bytes in and out. An entry is the plain value at `${prefix}${key}` with a TTL,
//! what `SETEX cache:KEY ttl JSON.stringify(v)` writes, so hand-written helpers and this cache
//! read each other's entries. When Redis cannot decide, the `onUnavailable` policy answers:
//! the bounded memory tier (`fallback/cache.rs`), a miss (`bypass`), or an error (`deny`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fred::types::Value;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::batch::{CallIn, Failure, Feature, NativeBatcher, Out};
use crate::connection::client::{ClientInner, NativeClient};
use crate::error::{Code, GuardError};
use crate::fallback::{MemoryCache, CACHE_FALLBACK_MAX_BYTES};
use crate::redis::scripts::{self, Call};

/// Cache op: read a key's value (bytes out, or none for a miss).
#[napi]
pub const CACHE_GET: u32 = 0;
/// Cache op: write a key's value (the call's bytes) for a TTL in ms (the call's number).
#[napi]
pub const CACHE_SET: u32 = 1;
/// Cache op: delete a key (`UNLINK`).
#[napi]
pub const CACHE_DELETE: u32 = 2;
/// Cache op: whether a key holds a value (`EXISTS`).
#[napi]
pub const CACHE_HAS: u32 = 3;

/// Result status (the first of four numbers): Redis decided.
#[napi]
pub const CACHE_REDIS: u32 = 0;
/// Result status: the memory tier answered (`onUnavailable: 'memory'`, Redis unavailable).
#[napi]
pub const CACHE_MEMORY: u32 = 1;
/// Result status: bypassed (`onUnavailable: 'bypass'`, Redis unavailable): a miss, a write
/// dropped.
#[napi]
pub const CACHE_BYPASS: u32 = 2;

/// The longest cache key, in bytes (UTF-8), without the prefix. Longer keys are
/// `ERR_REDIS_GUARD_INVALID_ARG`. The value is `8192`.
#[napi]
pub const CACHE_MAX_KEY_BYTES: u32 = 8192;

/// The longest TTL, in ms: one year.
const MAX_TTL_MS: f64 = 365.0 * 24.0 * 3600.0 * 1000.0;

const OP_GET: u8 = CACHE_GET as u8;
const OP_SET: u8 = CACHE_SET as u8;
const OP_DELETE: u8 = CACHE_DELETE as u8;
const OP_HAS: u8 = CACHE_HAS as u8;
const ST_REDIS: f64 = CACHE_REDIS as f64;
const ST_MEMORY: f64 = CACHE_MEMORY as f64;
const ST_BYPASS: f64 = CACHE_BYPASS as f64;

/// The cache's `onUnavailable`.
#[derive(Clone, Copy, PartialEq)]
enum Policy {
  Memory,
  Bypass,
  Deny,
}

struct CacheFeature {
  client: Arc<ClientInner>,
  prefix: String,
  policy: Policy,
  memory: MemoryCache,
  /// Whether the memory tier may hold entries: it is emptied once Redis answers again, so that
  /// a later outage never serves what was written or deleted in Redis meanwhile.
  memory_used: AtomicBool,
}

/// One call: the op, the caller's key (for the memory tier), its Redis key, and for a set the
/// value and TTL.
struct CacheOp {
  op: u8,
  key: String,
  rk: String,
  value: Vec<u8>,
  ttl: u64,
}

/// The native half of `Cache` (lib/cache.js).
#[napi]
pub struct NativeCache {
  inner: Arc<CacheFeature>,
}

/// The bytes of a bulk reply.
fn bytes_of(v: &Value) -> Option<&[u8]> {
  match v {
    Value::Bytes(b) => Some(b),
    Value::String(s) => Some(s.as_bytes()),
    _ => None,
  }
}

impl CacheFeature {
  /// One `CACHE_BATCH` call for the ops `idx` (all in one cluster slot).
  fn batch_call(&self, ops: &[&CacheOp], idx: &[usize]) -> Call {
    let mut letters = String::with_capacity(idx.len());
    let mut args = vec![String::new()];
    for &i in idx {
      let op = ops[i];
      match op.op {
        OP_GET => letters.push('g'),
        OP_SET => {
          letters.push('s');
          // Valid UTF-8: checked in `parse`.
          args.push(String::from_utf8_lossy(&op.value).into_owned());
          args.push(op.ttl.to_string());
        }
        OP_DELETE => letters.push('d'),
        _ => letters.push('h'),
      }
    }
    args[0] = letters;
    Call {
      script: &scripts::CACHE_BATCH,
      keys: idx.iter().map(|&i| ops[i].rk.clone()).collect(),
      args,
    }
  }

  /// Redis answered: the memory tier of an earlier outage is stale now.
  fn redis_answered(&self) {
    if self.memory_used.swap(false, Ordering::Relaxed) {
      self.memory.clear();
    }
  }
}

impl Feature for CacheFeature {
  type Op = CacheOp;
  /// The TTL in ms (sets only).
  const WIDTH_IN: usize = 1;
  /// Status, a number (found: 1 or 0; deleted: the count), the bytes' offset and length.
  const WIDTH_OUT: usize = 4;
  const BYTES_IN: bool = true;
  const BYTES_OUT: bool = true;

  fn client(&self) -> &Arc<ClientInner> {
    &self.client
  }

  fn parse(&self, call: CallIn<'_>) -> std::result::Result<CacheOp, GuardError> {
    if call.op > OP_HAS {
      return Err(GuardError::new(Code::InvalidArg, "bad cache operation"));
    }
    if call.key.is_empty() || call.key.len() > CACHE_MAX_KEY_BYTES as usize {
      return Err(GuardError::new(
        Code::InvalidArg,
        "the cache key must be 1 to 8192 bytes",
      ));
    }
    let (value, ttl) = if call.op == OP_SET {
      let ttl = call.nums[0];
      if !(1.0..=MAX_TTL_MS).contains(&ttl) {
        return Err(GuardError::new(
          Code::InvalidArg,
          "the cache TTL must be a number of ms from 1 to one year",
        ));
      }
      if std::str::from_utf8(call.bytes).is_err() {
        return Err(GuardError::new(
          Code::InvalidArg,
          "a cache value must be UTF-8 text",
        ));
      }
      (call.bytes.to_vec(), ttl.ceil() as u64)
    } else {
      (Vec::new(), 0)
    };
    Ok(CacheOp {
      op: call.op,
      key: call.key.to_string(),
      rk: format!("{}{}", self.prefix, call.key),
      value,
      ttl,
    })
  }

  /// One `CACHE_BATCH` call per cluster slot (the whole batch on a standalone or sentinel server).
  fn plan(&self, ops: &[&CacheOp], cluster: bool) -> (Vec<Vec<usize>>, Vec<Call>) {
    let groups = crate::redis::slot::groups(ops.iter().map(|o| o.rk.as_bytes()), cluster);
    let calls = groups.iter().map(|g| self.batch_call(ops, g)).collect();
    (groups, calls)
  }

  /// One reply per op.
  fn split<'v>(&self, _: &CacheOp, n: usize, reply: &'v Value) -> Option<Vec<&'v [Value]>> {
    match reply {
      Value::Array(a) if a.len() == n => Some(a.chunks(1).collect()),
      _ => None,
    }
  }

  fn apply(
    &self,
    op: &CacheOp,
    reply: &[Value],
    _now: u64,
    out: &mut Out<'_>,
  ) -> std::result::Result<(), Failure> {
    let r = &reply[0];
    match (op.op, r.as_i64()) {
      // OOM inside the script: nothing was written; the policy decides for this op.
      (_, Some(-2)) if !matches!(r, Value::Bytes(_) | Value::String(_)) => {
        return Err(Failure::Unavailable(None))
      }
      (OP_GET, _) => match r {
        Value::Null => out.set(&[ST_REDIS, 0.0]),
        v => match bytes_of(v) {
          Some(b) => {
            out.set(&[ST_REDIS, 1.0]);
            out.set_bytes(b);
          }
          None => {
            return Err(Failure::Refused(GuardError::new(
              Code::Redis,
              "the cache script failed for this key (not a string value?)",
            )))
          }
        },
      },
      (_, Some(n)) if n >= 0 && !matches!(r, Value::Bytes(_) | Value::String(_)) => {
        out.set(&[ST_REDIS, n as f64])
      }
      _ => {
        return Err(Failure::Refused(GuardError::new(
          Code::Redis,
          "the cache script failed for this key",
        )))
      }
    }
    self.redis_answered();
    Ok(())
  }

  /// Closed: `ERR_REDIS_GUARD_CLOSED`. Refused (NOPERM, WRONGTYPE, a script error): the error
  /// reaches the caller. Unavailable: the policy — the memory tier, a miss / dropped write
  /// (`bypass`), or `ERR_REDIS_GUARD_TIMEOUT` / `ERR_REDIS_GUARD_UNAVAILABLE` (`deny`).
  fn unavailable(&self, op: &CacheOp, why: &Failure, now: u64, out: &mut Out<'_>) {
    if !matches!(why, Failure::Unavailable(_)) {
      out.fail(why.code());
      return;
    }
    self
      .client
      .counters
      .fallbacks
      .fetch_add(1, Ordering::Relaxed);
    match self.policy {
      Policy::Memory => {
        self.memory_used.store(true, Ordering::Relaxed);
        match op.op {
          OP_GET => match self.memory.get(&op.key, now) {
            Some(v) => {
              out.set(&[ST_MEMORY, 1.0]);
              out.set_bytes(&v);
            }
            None => out.set(&[ST_MEMORY, 0.0]),
          },
          OP_SET => {
            self.memory.set(&op.key, &op.value, op.ttl, now);
            out.set(&[ST_MEMORY, 1.0]);
          }
          OP_DELETE => {
            let n = self.memory.delete(&op.key, now) as u8 as f64;
            out.set(&[ST_MEMORY, n]);
          }
          _ => {
            let n = self.memory.has(&op.key, now) as u8 as f64;
            out.set(&[ST_MEMORY, n]);
          }
        }
      }
      Policy::Bypass => out.set(&[ST_BYPASS, 0.0]),
      Policy::Deny => out.fail(why.code()),
    }
  }
}

#[napi]
impl NativeCache {
  /// A query cache on `client` for keys `${prefix}${key}` (the default prefix is `cache:`).
  /// `onUnavailable`: `memory` (a bounded per-process map), `bypass` (misses, writes dropped)
  /// or `deny` (reject); the default value is `memory`. `maxKeys`: most entries of the memory
  /// tier (which also holds at most 64 MiB); the default value is the client's
  /// `fallbackMaxKeys` (100000).
  #[napi(constructor)]
  pub fn new(
    client: &NativeClient,
    prefix: Option<String>,
    on_unavailable: Option<String>,
    max_keys: Option<u32>,
  ) -> Result<Self> {
    let policy = crate::batch::policy(
      on_unavailable.as_deref().unwrap_or("memory"),
      &[
        ("memory", Policy::Memory),
        ("bypass", Policy::Bypass),
        ("deny", Policy::Deny),
      ],
    )?;
    let client = client.inner.clone();
    let max = max_keys
      .map(|m| m as usize)
      .unwrap_or(client.settings.fallback_max_keys);
    Ok(NativeCache {
      inner: Arc::new(CacheFeature {
        client,
        prefix: prefix.unwrap_or_else(|| "cache:".into()),
        policy,
        memory: MemoryCache::new(max, CACHE_FALLBACK_MAX_BYTES),
        memory_used: AtomicBool::new(false),
      }),
    })
  }

  /// The batcher of this cache: ops `CACHE_*` on keys, one number in (a set's TTL in ms) and
  /// bytes (a set's value; empty otherwise); four numbers out per call: status (`CACHE_REDIS`,
  /// `CACHE_MEMORY`, `CACHE_BYPASS`; negative: an error code), found (get, has: 1 or 0; set: 1
  /// when stored; delete: keys deleted), and the offset and length of a get's value bytes
  /// (offset -1: none).
  #[napi]
  pub fn batcher(&self) -> NativeBatcher {
    NativeBatcher::new(self.inner.clone())
  }

  /// Delete every key of this cache's prefix (SCAN + UNLINK on every primary, never KEYS) and
  /// empty the memory tier. Resolves the number of Redis keys deleted; rejects with
  /// `ERR_REDIS_GUARD_INVALID_ARG` for an empty prefix (it would clear the whole database) and
  /// `ERR_REDIS_GUARD_UNAVAILABLE` while Redis is unavailable, whatever the policy.
  #[napi]
  pub async fn clear(&self) -> Result<f64> {
    let me = &self.inner;
    if me.prefix.is_empty() {
      return Err(GuardError::new(Code::InvalidArg, "clear() needs a non-empty prefix").into());
    }
    me.memory.clear();
    if !me.client.usable().await {
      return Err(GuardError::new(Code::Unavailable, "Redis is unavailable").into());
    }
    Ok(crate::redis::scan::delete_prefix(&me.client, &me.prefix).await?)
  }

  /// Delete every entry whose key (after the prefix) matches the glob `pattern` (`*`, `?`,
  /// `[...]`, `\` escapes, as `SCAN MATCH`; glob characters in the prefix are matched
  /// literally): SCAN + UNLINK on every primary, never KEYS. The memory tier is emptied. Resolves
  /// the number of Redis keys deleted; rejects with `ERR_REDIS_GUARD_INVALID_ARG` for an empty
  /// prefix or pattern and `ERR_REDIS_GUARD_UNAVAILABLE` while Redis is unavailable, whatever the
  /// policy.
  #[napi]
  pub async fn delete_pattern(&self, pattern: String) -> Result<f64> {
    let me = &self.inner;
    if me.prefix.is_empty() {
      return Err(
        GuardError::new(Code::InvalidArg, "deletePattern() needs a non-empty prefix").into(),
      );
    }
    if pattern.is_empty() {
      return Err(GuardError::new(Code::InvalidArg, "the pattern is empty").into());
    }
    me.memory.clear();
    if !me.client.usable().await {
      return Err(GuardError::new(Code::Unavailable, "Redis is unavailable").into());
    }
    let glob = format!("{}{pattern}", crate::redis::scan::glob_escape(&me.prefix));
    Ok(crate::redis::scan::delete_matching(&me.client, glob).await?)
  }

  /// Entries held by the memory tier now. The default value is `0` (nothing held until an outage).
  #[napi]
  pub fn fallback_size(&self) -> u32 {
    self.inner.memory.len() as u32
  }
}
