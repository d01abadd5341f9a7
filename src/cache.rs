//! The query cache (`Cache`, lib/cache.js) as a feature of the batch core (`batch/mod.rs`):
//! get, set (value bytes, TTL ms), delete, tag versions and invalidations, and fill locks; per
//! batch and cluster slot one `MGET` (a batch of plain gets) or one `CACHE_BATCH` script call,
//! bytes in and out. An entry is the plain value at `${prefix}${key}` with a TTL,
//! what `SETEX cache:KEY ttl JSON.stringify(v)` writes, so hand-written helpers and this cache
//! read each other's entries. When Redis cannot decide, the `onUnavailable` policy answers:
//! the bounded memory tier (`fallback/cache.rs`), a miss (`bypass`), or an error (`deny`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fred::interfaces::PubsubInterface;
use fred::types::Value;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::batch::reply::{self, bytes_of};
use crate::batch::{CallIn, Failure, Feature, NativeBatcher, Out};
use crate::connection::client::{ClientInner, NativeClient};
use crate::connection::subscriber::{OnEvent, Subscriber};
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
/// Cache op: the version of a tag (the call's key is the tag): 0 until it is first invalidated.
#[napi]
pub const CACHE_TAG_VERSION: u32 = 3;
/// Cache op: invalidate a tag (the call's key): its version goes up by one.
#[napi]
pub const CACHE_INVALIDATE: u32 = 4;
/// Cache op: take the fill lock of a key (`getOrSet` across processes) with a token (the call's
/// bytes) for a TTL in ms (the call's number): 1 when taken, 0 when another holds it (its
/// token then in the answer's bytes).
#[napi]
pub const CACHE_LOCK: u32 = 5;
/// Cache op: give back the fill lock of a key if it still holds the token (the call's bytes).
#[napi]
pub const CACHE_UNLOCK: u32 = 6;

/// Cache op: read a key's value through the script, always (`CACHE_GET` reads a batch of
/// plain reads with one `MGET`; an entry with tags or grace found that way is read again
/// with this op, which checks its tags and grace).
#[napi]
pub const CACHE_READ: u32 = 7;

/// Result flag (the third number, a bit): the value is stale — within its grace period.
#[napi]
pub const CACHE_STALE: u32 = 1;
/// Result flag: the entry's tags are left for the caller to check (a cluster, where the tag
/// versions may live in other slots than the entry).
#[napi]
pub const CACHE_UNCHECKED: u32 = 2;

/// Result flag: the value is an entry with tags or grace read by `MGET`: read it again with
/// `CACHE_READ`.
#[napi]
pub const CACHE_ENVELOPE: u32 = 4;

/// The keys redis-guard keeps under a cache's prefix for itself start with this (after the
/// prefix): tag versions at `__rg:tag:TAG`, fill locks at `__rg:lock:KEY`, and the channel
/// `__rg:changes`. Cache keys that start with it are `ERR_REDIS_GUARD_INVALID_ARG`.
#[napi]
pub const CACHE_RESERVED: &str = "__rg:";

/// Result status (the first of five numbers): Redis decided.
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

const OP_GET: u8 = CACHE_GET as u8;
const OP_SET: u8 = CACHE_SET as u8;
const OP_DELETE: u8 = CACHE_DELETE as u8;
const OP_TAG_VERSION: u8 = CACHE_TAG_VERSION as u8;
const OP_INVALIDATE: u8 = CACHE_INVALIDATE as u8;
const OP_LOCK: u8 = CACHE_LOCK as u8;
const OP_UNLOCK: u8 = CACHE_UNLOCK as u8;
const OP_READ: u8 = CACHE_READ as u8;
/// The header of an entry with tags or grace (`scripts::CACHE_BATCH`).
const ENVELOPE: &[u8] = b"\0rg1\n";
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
  /// `${prefix}__rg:tag:`: where tag versions live.
  tag_prefix: String,
  /// `${prefix}__rg:lock:`: where fill locks live.
  lock_prefix: String,
  /// Where writes and invalidations are published (`${prefix}__rg:changes`).
  channel: String,
  /// This cache's id in the messages it publishes.
  origin: String,
  policy: Policy,
  memory: MemoryCache,
  /// Whether a publish was refused (warned once).
  publish_denied: AtomicBool,
  /// Whether the memory tier may hold entries: it is emptied once Redis answers again, so that
  /// a later outage never serves what was written or deleted in Redis meanwhile.
  memory_used: AtomicBool,
}

/// One call: the op, the caller's key (for the memory tier), its Redis key, and for a set or a
/// lock the bytes (value or token) and TTL.
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
  subscriber: Mutex<Option<Subscriber>>,
}

/// The grace period of an entry's bytes, in ms (0 for a plain value).
fn grace_of(value: &[u8]) -> u64 {
  if !value.starts_with(ENVELOPE) {
    return 0;
  }
  let rest = &value[ENVELOPE.len()..];
  let line = &rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(0)];
  serde_json::from_slice::<serde_json::Value>(line)
    .ok()
    .and_then(|h| h.get("g").and_then(|g| g.as_u64()))
    .unwrap_or(0)
}

impl CacheFeature {
  /// One `CACHE_BATCH` call for the ops `idx` (all in one cluster slot).
  fn batch_call(&self, ops: &[&CacheOp], idx: &[usize], cluster: bool) -> Call {
    let mut letters = String::with_capacity(idx.len());
    let mut args = vec![
      String::new(),
      if cluster { "0" } else { "1" }.to_string(),
      self.tag_prefix.clone(),
      self.channel.clone(),
      self.origin.clone(),
    ];
    for &i in idx {
      let op = ops[i];
      // Values and tokens are valid UTF-8: checked in `parse`.
      let text = || String::from_utf8_lossy(&op.value).into_owned();
      match op.op {
        OP_GET | OP_READ => letters.push('g'),
        OP_SET | OP_LOCK => {
          letters.push(if op.op == OP_SET { 's' } else { 'l' });
          args.push(text());
          args.push(op.ttl.to_string());
        }
        OP_DELETE => letters.push('d'),
        OP_TAG_VERSION => letters.push('v'),
        OP_INVALIDATE => letters.push('i'),
        _ => {
          letters.push('u');
          args.push(text());
        }
      }
    }
    args[0] = letters;
    Call {
      script: Some(&scripts::CACHE_BATCH),
      keys: idx.iter().map(|&i| ops[i].rk.clone()).collect(),
      args,
    }
  }

  /// Tell every process's L1 that many entries went at once (`clear`, `deletePattern`): the
  /// message `{"o":id,"c":1}`. Best effort: an L1 that misses it still expires its entries.
  async fn publish_cleared(&self) {
    let msg = format!("{{\"o\":\"{}\",\"c\":1}}", self.origin);
    let _ = self
      .client
      .run(async {
        self
          .client
          .redis
          .publish::<Value, _, _>(self.channel.as_str(), msg)
          .await
      })
      .await;
  }

  /// Fill locks that may sit in Redis although nobody holds them: a take whose outcome is
  /// unknown (the deadline fired after it was sent), or a give-back that Redis did not decide.
  /// Each is compare-and-deleted with its token once Redis answers again (`batch::settle`), so
  /// that no process waits for an orphan until its TTL (`timeoutMs`).
  fn give_back_later<'o>(&self, locks: impl Iterator<Item = &'o CacheOp>) {
    let cluster = self.client.is_cluster();
    let mut max_ttl = 0;
    let calls: Vec<Call> = locks
      .map(|l| {
        max_ttl = max_ttl.max(l.ttl);
        let op = CacheOp {
          op: OP_UNLOCK,
          key: String::new(),
          rk: l.rk.clone(),
          value: l.value.clone(),
          ttl: 0,
        };
        self.batch_call(&[&op], &[0], cluster)
      })
      .collect();
    // A give-back does not carry the TTL: the longest a fill lock lives (one hour) bounds it.
    let give_up = if max_ttl > 0 { max_ttl } else { 3_600_000 };
    crate::batch::settle::later(
      &self.client,
      calls,
      1,
      give_up.saturating_add(10_000),
      |_| {},
    );
  }

  /// Redis answered: the memory tier of an earlier outage is stale now.
  fn redis_answered(&self) {
    if self.memory_used.swap(false, Ordering::Relaxed) {
      self.memory.clear();
    }
  }
}

impl Feature for CacheFeature {
  const NAME: &'static str = "cache";
  type Op = CacheOp;
  /// The TTL in ms (sets and locks only).
  const WIDTH_IN: usize = 1;
  /// Status, a number (found: 1 or 0; deleted: the count; a version; taken: 1 or 0), flags
  /// (`CACHE_STALE`, `CACHE_UNCHECKED`), the bytes' offset and length.
  const WIDTH_OUT: usize = 5;
  const BYTES_IN: bool = true;
  const BYTES_OUT: bool = true;

  fn client(&self) -> &Arc<ClientInner> {
    &self.client
  }

  fn parse(&self, call: CallIn<'_>) -> std::result::Result<CacheOp, GuardError> {
    if call.op > OP_READ {
      return Err(GuardError::new(Code::InvalidArg, "bad cache operation"));
    }
    if call.key.is_empty() || call.key.len() > CACHE_MAX_KEY_BYTES as usize {
      return Err(GuardError::new(
        Code::InvalidArg,
        "the cache key must be 1 to 8192 bytes",
      ));
    }
    let timed = call.op == OP_SET || call.op == OP_LOCK;
    let ttl = if timed {
      let ttl = call.nums[0];
      if !(1.0..=2.0 * crate::clock::MAX_TTL_MS).contains(&ttl) {
        return Err(GuardError::new(
          Code::InvalidArg,
          "the cache TTL must be a number of ms from 1 to two years (TTL and grace)",
        ));
      }
      ttl.ceil() as u64
    } else {
      0
    };
    let value = if timed || call.op == OP_UNLOCK {
      if std::str::from_utf8(call.bytes).is_err() {
        return Err(GuardError::new(
          Code::InvalidArg,
          "a cache value must be UTF-8 text",
        ));
      }
      call.bytes.to_vec()
    } else {
      Vec::new()
    };
    let rk = match call.op {
      OP_TAG_VERSION | OP_INVALIDATE => format!("{}{}", self.tag_prefix, call.key),
      OP_LOCK | OP_UNLOCK => format!("{}{}", self.lock_prefix, call.key),
      _ => format!("{}{}", self.prefix, call.key),
    };
    Ok(CacheOp {
      op: call.op,
      key: call.key.to_string(),
      rk,
      value,
      ttl,
    })
  }

  /// One call per cluster slot (the whole batch on a standalone or sentinel server): a plain
  /// `MGET` when every op of the slot is a `CACHE_GET` (a Lua script copies every value twice
  /// on its way out: `MGET` of 64 keys of 1 KB is about 3 times as fast on the server), else one
  /// `CACHE_BATCH` script call, in which the ops run in their order.
  fn plan(&self, ops: &[&CacheOp], cluster: bool) -> (Vec<Vec<usize>>, Vec<Call>) {
    let groups = crate::redis::slot::groups(ops.iter().map(|o| o.rk.as_bytes()), cluster);
    let calls = groups
      .iter()
      .map(|g| {
        if g.iter().all(|&i| ops[i].op == OP_GET) {
          Call {
            script: None,
            keys: g.iter().map(|&i| ops[i].rk.clone()).collect(),
            args: Vec::new(),
          }
        } else {
          self.batch_call(ops, g, cluster)
        }
      })
      .collect();
    (groups, calls)
  }

  /// One reply per op (and one more when the change could not be published).
  fn split<'v>(&self, _: &CacheOp, n: usize, reply: &'v Value) -> Option<Vec<&'v [Value]>> {
    match reply {
      Value::Array(a) if a.len() == n => Some(a.chunks(1).collect()),
      Value::Array(a) if a.len() == n + 1 => {
        if !self.publish_denied.swap(true, Ordering::Relaxed) {
          tracing::warn!(target: "redis_guard", client = self.client.id as u64,
            "the cache could not publish its changes on {} (an ACL user needs `&{}`): \
             the L1 of other processes will not hear of this process's writes", self.channel, self.channel);
        }
        Some(a[..n].chunks(1).collect())
      }
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
    // OOM inside the script: nothing was written; the policy decides for this op.
    let r = reply::op_reply(reply)?;
    let failed =
      || Failure::script_error("the cache script failed for this key (not a string value?)");
    let op_kind = if op.op == OP_READ { OP_GET } else { op.op };
    match (op_kind, r) {
      (OP_GET, Value::Null) => out.set(&[ST_REDIS, 0.0]),
      // An entry with tags or grace, read by `MGET`: to be read again through the script.
      (OP_GET, Value::Bytes(_) | Value::String(_))
        if op.op == OP_GET && bytes_of(r).is_some_and(|b| b.starts_with(ENVELOPE)) =>
      {
        out.set(&[ST_REDIS, 1.0, CACHE_ENVELOPE as f64]);
        out.set_bytes(bytes_of(r).unwrap_or_default());
      }
      // An entry with tags or grace: its value, stale, unchecked.
      (OP_GET, Value::Array(a)) if a.len() == 3 => {
        let flags = a[1].as_i64().unwrap_or(0) * CACHE_STALE as i64
          + a[2].as_i64().unwrap_or(0) * CACHE_UNCHECKED as i64;
        out.set(&[ST_REDIS, 1.0, flags as f64]);
        out.set_bytes(bytes_of(&a[0]).ok_or_else(failed)?);
      }
      (OP_GET, Value::Bytes(_) | Value::String(_)) => {
        out.set(&[ST_REDIS, 1.0]);
        out.set_bytes(bytes_of(r).unwrap_or_default());
      }
      // A fill lock held by another: its holder's token.
      (OP_LOCK, Value::Bytes(_) | Value::String(_)) => {
        out.set(&[ST_REDIS, 0.0]);
        out.set_bytes(bytes_of(r).unwrap_or_default());
      }
      (OP_GET, _) => return Err(failed()),
      (_, Value::Integer(n)) if *n >= 0 => out.set(&[ST_REDIS, *n as f64]),
      _ => return Err(failed()),
    }
    self.redis_answered();
    Ok(())
  }

  /// Closed: `ERR_REDIS_GUARD_CLOSED`. Refused (NOPERM, WRONGTYPE, a script error): the error
  /// reaches the caller. Unavailable: the policy — the memory tier, a miss / dropped write
  /// (`bypass`), or `ERR_REDIS_GUARD_TIMEOUT` / `ERR_REDIS_GUARD_UNAVAILABLE` (`deny`). A tag
  /// invalidation fails in every policy (it would not reach Redis's entries), and empties the
  /// memory tier; a fill lock is taken (the process's own one-at-a-time holds meanwhile).
  fn unavailable(&self, op: &CacheOp, why: &Failure, now: u64, out: &mut Out<'_>) {
    self
      .client
      .counters
      .fallbacks
      .fetch_add(1, Ordering::Relaxed);
    if op.op == OP_INVALIDATE {
      self.memory.clear();
      out.fail(why.code());
      return;
    }
    if op.op == OP_UNLOCK {
      self.give_back_later(std::iter::once(op));
    }
    match self.policy {
      Policy::Memory => {
        self.memory_used.store(true, Ordering::Relaxed);
        match op.op {
          OP_GET | OP_READ => match self.memory.get(&op.key, now) {
            Some((v, left)) => {
              let stale = if left < grace_of(&v) { CACHE_STALE } else { 0 };
              out.set(&[ST_MEMORY, 1.0, stale as f64]);
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
          OP_LOCK => out.set(&[ST_MEMORY, 1.0]),
          _ => out.set(&[ST_MEMORY, 0.0]),
        }
      }
      Policy::Bypass => out.set(&[ST_BYPASS, (op.op == OP_LOCK) as u8 as f64]),
      Policy::Deny => out.fail(why.code()),
    }
  }

  fn in_doubt(&self, ops: &[&CacheOp]) {
    self.give_back_later(ops.iter().copied().filter(|o| o.op == OP_LOCK));
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
    let prefix = prefix.unwrap_or_else(|| "cache:".into());
    let max = max_keys
      .map(|m| m as usize)
      .unwrap_or(client.settings.fallback_max_keys);
    Ok(NativeCache {
      inner: Arc::new(CacheFeature {
        client,
        tag_prefix: format!("{prefix}{CACHE_RESERVED}tag:"),
        lock_prefix: format!("{prefix}{CACHE_RESERVED}lock:"),
        channel: format!("{prefix}{CACHE_RESERVED}changes"),
        origin: format!("{:016x}", rand::random::<u64>()),
        prefix,
        policy,
        memory: MemoryCache::new(max, CACHE_FALLBACK_MAX_BYTES),
        memory_used: AtomicBool::new(false),
        publish_denied: AtomicBool::new(false),
      }),
      subscriber: Mutex::new(None),
    })
  }

  /// The batcher of this cache: ops `CACHE_*` on keys (tags for `CACHE_TAG_VERSION` and
  /// `CACHE_INVALIDATE`), one number in (the TTL in ms of a set or a fill lock) and bytes (a
  /// set's value, a lock's token; empty otherwise); five numbers out per call: status
  /// (`CACHE_REDIS`, `CACHE_MEMORY`, `CACHE_BYPASS`; negative: an error code), a number (found:
  /// 1 or 0; set: 1 when stored; delete: keys deleted; a tag's version; lock taken: 1 or 0),
  /// flags (`CACHE_STALE`, `CACHE_UNCHECKED`, `CACHE_ENVELOPE`), and the offset and length of
  /// the answer's bytes (a value, or the token of a lock's holder; offset -1: none).
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
    let n = crate::redis::scan::delete_prefix(&me.client, &me.prefix).await?;
    me.publish_cleared().await;
    Ok(n)
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
    let n = crate::redis::scan::delete_matching(&me.client, glob).await?;
    me.publish_cleared().await;
    Ok(n)
  }

  /// This cache's id in the change messages it publishes (16 hex digits, random).
  #[napi(getter)]
  pub fn origin(&self) -> String {
    self.inner.origin.clone()
  }

  /// Hear of every cache's changes under this prefix (`${prefix}__rg:changes`) on a subscriber
  /// connection built with the client's settings: `onEvent(event, text)` with event 0 (now
  /// subscribed), 1 (interrupted: messages may have been lost) or 2 (a message: JSON
  /// `{"o":origin,"k":[redisKeys],"t":[tags],"c":1}`). Calling it again replaces the previous
  /// subscriber. Stopped by `unsubscribe()` and when the client closes.
  #[napi(ts_args_type = "onEvent: (event: number, text: string) => void")]
  pub fn subscribe(&self, on_event: Function<'_, FnArgs<(u32, String)>, ()>) -> Result<()> {
    let tsfn: OnEvent = on_event
      .build_threadsafe_function()
      .weak::<true>()
      .callee_handled::<false>()
      .build_callback(|ctx| Ok(FnArgs::from(ctx.value)))?;
    let sub = Subscriber::start(&self.inner.client, self.inner.channel.clone(), tsfn)?;
    if let Some(old) = self
      .subscriber
      .lock()
      .unwrap_or_else(|e| e.into_inner())
      .replace(sub)
    {
      old.stop();
    }
    Ok(())
  }

  /// Stop hearing of changes (see `subscribe`). Nothing happens when not subscribed.
  #[napi]
  pub fn unsubscribe(&self) {
    if let Some(old) = self
      .subscriber
      .lock()
      .unwrap_or_else(|e| e.into_inner())
      .take()
    {
      old.stop();
    }
  }

  /// Entries held by the memory tier now. The default value is `0` (nothing held until an outage).
  #[napi]
  pub fn fallback_size(&self) -> u32 {
    self.inner.memory.len() as u32
  }
}
