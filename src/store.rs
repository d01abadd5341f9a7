//! The rate-limit store as a feature of the batch core (`batch/mod.rs`), for every algorithm
//! (fixed window, sliding window, GCRA) and every front: `RedisStore` (lib/store.js, the
//! express-rate-limit and hono-rate-limiter store), `RateLimiter` (lib/limiter.js) and the
//! framework adapters (lib/adapters/). One script call of the store's algorithm per batch and
//! cluster slot (`redis/limits.rs`; or rate-limit-redis's single-key scripts, `scriptMode:
//! 'per-key'`, fixed window only), answered from the bounded memory state (`fallback/`, the same
//! algorithm in process) under the `onUnavailable` policy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use fred::types::Value;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::batch::{CallIn, Failure, Feature, NativeBatcher, Out};
use crate::connection::client::{ClientInner, NativeClient};
use crate::error::{Code, GuardError};
use crate::fallback::{Algo, Cells, Decision, LimitOp, Windows};
use crate::redis::limits;
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
/// Store op: count `cost` (the first number) only if it fits under `limit` (the second) in a
/// window of `windowMs` (the third): a refused call consumes nothing; cost 0 only reads.
#[napi]
pub const STORE_LIMIT: u32 = 4;
/// Store op: count `cost` whatever the limit (as @fastify/rate-limit's stores do); allowed while
/// the count is at most `limit`.
#[napi]
pub const STORE_HIT: u32 = 5;
/// Store op: @nestjs/throttler's `increment` (numbers: block ms, limit, window ms): a key over
/// its limit is blocked for the block duration and its hits are not counted meanwhile. The
/// sliding window and GCRA treat it as `STORE_LIMIT` of cost 1 (blocked until it would pass).
#[napi]
pub const STORE_THROTTLE: u32 = 6;

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
const OP_LIMIT: u8 = STORE_LIMIT as u8;
const OP_HIT: u8 = STORE_HIT as u8;
const OP_THROTTLE: u8 = STORE_THROTTLE as u8;
/// The limit of a sliding-window store used without one (express-rate-limit with a `limit`
/// function): never reached, so every hit counts and the middleware decides.
const NO_LIMIT: f64 = 1e15;
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
  /// Where this algorithm's keys start: the prefix, then `sw:` or `gcra:` for the new ones.
  key_prefix: String,
  algo: Algo,
  window_ms: AtomicU64,
  /// The limit of the express-rate-limit ops (0: none), set by `configure`.
  limit: AtomicU64,
  /// GCRA's burst (0: the limit).
  burst: AtomicU64,
  reset_expiry: AtomicBool,
  policy: Policy,
  /// One script call per batch (per slot) rather than one per key.
  batch_script: bool,
  windows: Windows,
  cells: Cells,
}

/// One call: the op, the caller's key (for the fallback), its Redis key, and the op's cost (the
/// block duration for a throttle), limit and window.
struct StoreOp {
  op: u8,
  key: String,
  rk: String,
  x: f64,
  limit: f64,
  window: f64,
}

impl StoreOp {
  /// Whether a refused call consumed nothing (then `remaining` is what was left before it).
  fn refused_free(&self) -> bool {
    self.op == OP_LIMIT
  }
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

  /// The single-key script call of rate-limit-redis's kind (`scriptMode: 'per-key'`); ops of
  /// the limiter and the adapters go as a one-op batch call.
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
      OP_RESET => Call {
        script: Some(&scripts::RESET),
        keys,
        args: vec![],
      },
      _ => self.batch_call(&[op], &[0]),
    }
  }

  /// The store's limit for the express-rate-limit ops of the sliding window and GCRA.
  fn store_limit(&self) -> f64 {
    match self.limit.load(Ordering::Relaxed) {
      0 => NO_LIMIT,
      l => l as f64,
    }
  }

  /// One script call of the store's algorithm for the ops `idx` (all in one cluster slot).
  fn batch_call(&self, ops: &[&StoreOp], idx: &[usize]) -> Call {
    let letters = String::new();
    let window = self.window_ms.load(Ordering::Relaxed).to_string();
    let (script, mut args) = match self.algo {
      Algo::Fixed => (&*limits::FIXED, vec![self.reset_flag(), window, letters]),
      Algo::Sliding => (
        &*limits::SLIDING,
        vec![letters, fnum(self.store_limit()), window],
      ),
      Algo::Gcra => (
        &*limits::GCRA,
        vec![
          letters,
          fnum(self.store_limit()),
          window,
          self.burst.load(Ordering::Relaxed).to_string(),
        ],
      ),
    };
    // The ops' args; an op with the same args as the op before it is sent in upper case, alone.
    let mut letters = String::with_capacity(idx.len());
    let mut last: Option<(f64, f64, f64)> = None;
    for &i in idx {
      let o = ops[i];
      let l = letter(o.op);
      if matches!(l, b'l' | b'h' | b't') {
        let now = (o.x, o.limit, o.window);
        if last == Some(now) {
          letters.push(l.to_ascii_uppercase() as char);
          continue;
        }
        last = Some(now);
        args.extend([fnum(o.x), fnum(o.limit), fnum(o.window)]);
      }
      letters.push(l as char);
    }
    // Every key of the call distinct (the usual case on many keys): the script counts none.
    let mut seen = std::collections::HashSet::with_capacity(idx.len());
    if idx.iter().all(|&i| seen.insert(ops[i].rk.as_str())) {
      letters.push('u');
    }
    args[if self.algo == Algo::Fixed { 2 } else { 0 }] = letters;
    Call {
      script: Some(script),
      keys: idx.iter().map(|&i| ops[i].rk.clone()).collect(),
      args,
    }
  }

  /// The capacity `remaining` counts down from: the limit, or GCRA's burst when set.
  fn cap(&self, op: &StoreOp) -> f64 {
    let b = self.burst.load(Ordering::Relaxed);
    if self.algo == Algo::Gcra && b > 0 {
      b as f64
    } else {
      op.limit
    }
  }

  /// The six numbers of an answer: status, hits, reset ms, allowed, remaining, retry ms.
  fn answer(&self, status: f64, op: &StoreOp, dd: Decision) -> [f64; 6] {
    let cap = self.cap(op);
    let used = if !dd.allowed && op.refused_free() {
      dd.hits - op.x
    } else {
      dd.hits
    };
    let remaining = (cap - used).clamp(0.0, cap.max(0.0));
    [
      status,
      dd.hits.max(0.0),
      dd.reset.max(0.0),
      dd.allowed as u8 as f64,
      remaining,
      dd.retry,
    ]
  }
}

/// The script letter of a store op.
fn letter(op: u8) -> u8 {
  match op {
    OP_INCREMENT => b'i',
    OP_GET => b'g',
    OP_DECREMENT => b'd',
    OP_RESET => b'r',
    OP_LIMIT => b'l',
    OP_HIT => b'h',
    _ => b't',
  }
}

/// A number as a script argument: integers without a fraction.
fn fnum(x: f64) -> String {
  if x.fract() == 0.0 && x.abs() < 1e15 {
    format!("{}", x as i64)
  } else {
    format!("{x}")
  }
}

/// A whole number of at least `min` (cost, limit, window), or an `InvalidArg` error.
fn whole(x: f64, min: f64, what: &str) -> std::result::Result<f64, GuardError> {
  if x.is_finite() && x.fract() == 0.0 && x >= min && x <= 9e15 {
    Ok(x)
  } else {
    Err(GuardError::new(
      Code::InvalidArg,
      format!("{what} must be a whole number of at least {min}"),
    ))
  }
}

impl Feature for Store {
  const NAME: &'static str = "rate_limit";
  type Op = StoreOp;
  const WIDTH_IN: usize = 3;
  const WIDTH_OUT: usize = 6;
  const POLICY_ON_EVERY_FAILURE: bool = true;

  fn client(&self) -> &Arc<ClientInner> {
    &self.client
  }

  fn parse(&self, call: CallIn<'_>) -> std::result::Result<StoreOp, GuardError> {
    if call.op > OP_THROTTLE {
      return Err(GuardError::new(Code::InvalidArg, "bad store operation"));
    }
    let mut op = call.op;
    let (mut x, mut limit, mut window) = (1.0, self.store_limit(), 0.0);
    if op >= OP_LIMIT {
      x = whole(call.nums[0], 0.0, "the cost")?;
      limit = whole(call.nums[1], 1.0, "the limit")?;
      window = whole(call.nums[2], 1.0, "the window (ms)")?;
      if self.algo != Algo::Fixed && op == OP_THROTTLE {
        // A throttle of the sliding window and GCRA: a limit of cost 1.
        x = 1.0;
        op = OP_LIMIT;
      }
    } else if self.algo == Algo::Gcra
      && op == OP_INCREMENT
      && self.limit.load(Ordering::Relaxed) == 0
    {
      return Err(GuardError::new(
        Code::InvalidArg,
        "a 'gcra' RedisStore needs a numeric `limit` (express-rate-limit's `limit` option)",
      ));
    }
    if window == 0.0 {
      window = self.window_ms.load(Ordering::Relaxed) as f64;
    }
    Ok(StoreOp {
      op,
      key: call.key.to_string(),
      rk: redis_key(&self.key_prefix, call.key),
      x,
      limit,
      window,
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

  /// The algorithm's script: four numbers per op (`hits`, `reset`, `allowed`, `retry`; reset -3
  /// when the op failed); the single-key scripts: a `{ hits, pttl }` pair, or the number of
  /// keys a reset deleted.
  fn split<'v>(&self, first: &StoreOp, n: usize, reply: &'v Value) -> Option<Vec<&'v [Value]>> {
    let batched = self.batch_script || first.op > OP_RESET;
    match reply {
      Value::Array(a) if batched && a.len() == 4 * n => Some(a.chunks(4).collect()),
      _ if batched => None,
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
    let allowed = reply.get(2).and_then(num).unwrap_or(1) == 1;
    let retry = reply.get(3).and_then(num).unwrap_or(0) as f64;
    let dd = |h: i64, t: i64| Decision {
      hits: h as f64,
      reset: t as f64,
      allowed,
      retry,
    };
    let parsed = match (op.op, h, t) {
      (_, _, -3) => None,
      (OP_RESET, h, _) => Some(self.answer(ST_REDIS, op, dd(h.unwrap_or(0), 0))),
      (OP_GET, Some(h), t) if t != -2 && h >= 0 => Some(self.answer(ST_REDIS, op, dd(h, t))),
      (OP_GET, _, _) => Some([ST_NONE, 0.0, 0.0, 1.0, 0.0, 0.0]),
      (OP_DECREMENT, h, t) => Some(self.answer(ST_REDIS, op, dd(h.unwrap_or(0).max(0), t))),
      (OP_INCREMENT, Some(h), t) if h >= 1 => Some(self.answer(ST_REDIS, op, dd(h, t))),
      (OP_INCREMENT, _, _) => None,
      (_, Some(h), t) if h >= 0 => Some(self.answer(ST_REDIS, op, dd(h, t))),
      _ => None,
    };
    match parsed {
      Some(p) => {
        out.set(&p);
        Ok(())
      }
      None => Err(Failure::script_error(
        "the rate-limit script failed for this key",
      )),
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
    let fixed_store_op = self.algo == Algo::Fixed && op.op <= OP_RESET;
    match self.policy {
      Policy::Memory if fixed_store_op => match op.op {
        OP_INCREMENT => {
          let reset = self.reset_expiry.load(Ordering::Relaxed);
          let (h, t) = self.windows.increment(&op.key, window, reset, now);
          out.set(&[ST_MEMORY, h as f64, t as f64, 1.0]);
        }
        OP_GET => match self.windows.get(&op.key, now) {
          Some((h, t)) => out.set(&[ST_MEMORY, h as f64, t as f64, 1.0]),
          None => out.set(&[ST_NONE, 0.0, 0.0, 1.0]),
        },
        OP_DECREMENT => {
          self.windows.decrement(&op.key, now);
          out.set(&[ST_MEMORY, 0.0, 0.0, 1.0]);
        }
        _ => {
          self.windows.reset(&op.key);
          self
            .cells
            .run(self.algo, &op.key, self.limit_op(op), 0.0, now as f64);
          out.set(&[ST_MEMORY, 0.0, 0.0, 1.0]);
        }
      },
      Policy::Memory => {
        let burst = self.burst.load(Ordering::Relaxed) as f64;
        let dd = self.cells.run(
          self.algo,
          &op.key,
          self.limit_op(op),
          burst,
          crate::clock::clock_ms(),
        );
        if op.op == OP_GET && dd.hits < 0.0 {
          out.set(&[ST_NONE, 0.0, 0.0, 1.0]);
        } else {
          out.set(&self.answer(ST_MEMORY, op, dd));
        }
      }
      Policy::Allow => match op.op {
        OP_INCREMENT => out.set(&[ST_ALLOW, 1.0, window as f64, 1.0]),
        OP_GET => out.set(&[ST_NONE, 0.0, 0.0, 1.0]),
        OP_LIMIT | OP_HIT | OP_THROTTLE => {
          let dd = Decision {
            hits: op.x,
            reset: op.window,
            allowed: true,
            retry: 0.0,
          };
          out.set(&self.answer(ST_ALLOW, op, dd));
        }
        _ => out.set(&[ST_ALLOW, 0.0, 0.0, 1.0]),
      },
      Policy::Deny => out.fail(match why.code() {
        Code::Timeout => Code::Timeout,
        _ => Code::Unavailable,
      }),
    }
  }
}

impl Store {
  /// An op as the in-process algorithms take it.
  fn limit_op(&self, op: &StoreOp) -> LimitOp {
    LimitOp {
      letter: letter(op.op),
      x: op.x,
      limit: op.limit,
      window: op.window,
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
    algorithm: Option<String>,
  ) -> Result<Self> {
    let algo = match algorithm.as_deref().unwrap_or("fixed-window") {
      "fixed-window" => Algo::Fixed,
      "sliding-window" => Algo::Sliding,
      "gcra" => Algo::Gcra,
      _ => {
        return Err(
          GuardError::config(
            "option `algorithm` must be 'fixed-window', 'sliding-window' or 'gcra'",
          )
          .into(),
        )
      }
    };
    let batch_script = match script_mode.as_deref().unwrap_or("batch") {
      "batch" => true,
      "per-key" => false,
      _ => {
        return Err(GuardError::config("option `scriptMode` must be 'batch' or 'per-key'").into())
      }
    };
    if !batch_script && algo != Algo::Fixed {
      return Err(
        GuardError::config(
          "option `scriptMode: 'per-key'` is for the 'fixed-window' algorithm only",
        )
        .into(),
      );
    }
    let key_prefix = match algo {
      Algo::Fixed => prefix.clone(),
      Algo::Sliding => format!("{prefix}sw:"),
      Algo::Gcra => format!("{prefix}gcra:"),
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
        key_prefix,
        algo,
        window_ms: AtomicU64::new(60_000),
        limit: AtomicU64::new(0),
        burst: AtomicU64::new(0),
        reset_expiry: AtomicBool::new(false),
        policy,
        batch_script,
        windows: Windows::new(max),
        cells: Cells::new(max),
      }),
    })
  }

  /// Set the window length (ms), `resetExpiryOnChange`, the limit of the express-rate-limit ops
  /// (0 or absent: none) and GCRA's burst (0 or absent: the limit).
  #[napi]
  pub fn configure(
    &self,
    window_ms: f64,
    reset_expiry: bool,
    limit: Option<f64>,
    burst: Option<f64>,
  ) {
    let whole = |x: Option<f64>| {
      x.filter(|x| x.is_finite() && *x >= 1.0)
        .map(|x| x.floor() as u64)
        .unwrap_or(0)
    };
    self.inner.limit.store(whole(limit), Ordering::Relaxed);
    self.inner.burst.store(whole(burst), Ordering::Relaxed);
    self
      .inner
      .window_ms
      .store(window_ms.max(1.0) as u64, Ordering::Relaxed);
    self
      .inner
      .reset_expiry
      .store(reset_expiry, Ordering::Relaxed);
  }

  /// The batcher of this store: ops `STORE_*` on keys, three numbers in (cost, limit, window
  /// ms: the ops `STORE_LIMIT`, `STORE_HIT`, `STORE_THROTTLE`; the others ignore them); six
  /// numbers out per call: status (`STORE_REDIS`, `STORE_MEMORY`, `STORE_ALLOW`, `STORE_NONE`;
  /// negative: an error code), hits, ms until reset, allowed (1 or 0), remaining, and ms until a
  /// refused call could pass (-1: never).
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
    me.cells.clear();
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
    (self.inner.windows.len() + self.inner.cells.len()) as u32
  }
}
