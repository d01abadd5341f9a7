//! Distributed locks: grant (`SET NX PX` + the next fencing token), token-checked release
//! (compare-and-delete) and extend (compare-and-pexpire). Like the store, the lock calls of one
//! event-loop turn arrive as one batch (one JS→Rust crossing) and run as one script call per
//! cluster slot. When Redis is unavailable the `onUnavailable` policy decides: the process-local
//! lock table (`local`), proceed (`allow`), or fail (`deny`). Waiting, leases and `withLock`
//! live in `lib/client.js`.

use std::sync::{Arc, LazyLock};

use fred::types::Value;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::client::{ClientInner, NativeClient};
use crate::error::{Code, GuardError};
use crate::fallback::now_ms;
use crate::scripts::{self, Call};
use crate::slot::companion_key;

/// Fence counters live this long after the last grant of their key (7 days): a fence restarts
/// only for a key unused that long (and never below what this process has seen).
const FENCE_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// Operation kinds (the low two bits of an op byte).
const ACQUIRE: u8 = 0;
const RELEASE: u8 = 1;
const EXTEND: u8 = 2;
/// Bit 4 of an acquire's op byte: no fencing token (`acquireLock`, which never shows one):
/// Redis runs `SET NX PX` alone, without the fence counter's `INCR` and `PEXPIRE`.
const NO_FENCE: u8 = 16;

/// For an acquire, bits 2-3 of the op byte: the `onUnavailable` policy. For a release or an
/// extend: who granted the lease. Both are also the first result number of an acquire.
const REDIS_OR_LOCAL_MODE: u8 = 0;
const LOCAL_OR_ALLOW_MODE: u8 = 1;
const ALLOW_OR_DENY_MODE: u8 = 2;

/// Result sources (first number of an acquire's result).
const SRC_REDIS: f64 = 0.0;
const SRC_LOCAL: f64 = 1.0;
const SRC_ALLOW: f64 = 2.0;

fn check_key(key: &str) -> std::result::Result<(), GuardError> {
  if key.is_empty() {
    return Err(GuardError::new(Code::InvalidArg, "the lock key is empty"));
  }
  if key.len() > 8192 {
    return Err(GuardError::new(
      Code::InvalidArg,
      "the lock key is longer than 8192 bytes",
    ));
  }
  Ok(())
}

fn check_ttl(ttl_ms: f64) -> std::result::Result<u64, GuardError> {
  if !(1.0..=365.0 * 24.0 * 3600.0 * 1000.0).contains(&ttl_ms) {
    return Err(GuardError::new(
      Code::InvalidArg,
      "the lock TTL must be a number of ms from 1 to one year",
    ));
  }
  Ok(ttl_ms as u64)
}

/// `BUSY` (a script is running), `LOADING` (the dataset is loading) and `OOM` replies: nothing
/// was written and the server cannot take this call now.
fn is_unusable_now(e: &fred::error::Error) -> bool {
  let d = e.details();
  d.starts_with("BUSY ") || d.starts_with("LOADING ") || d.starts_with("OOM ")
}

/// How long after a lock write whose outcome is unknown (a deadline fired) the cleanup keeps
/// trying, beyond the write's TTL: a write still queued in a stalled Redis is applied when it
/// resumes, and after its TTL it is gone by itself.
const CLEANUP_MARGIN_MS: u64 = 10_000;
/// A cleanup runs this many passes, the second `CLEANUP_SECOND_PASS` after the first succeeded:
/// a write sent on a connection that was replaced meanwhile can still be read by Redis from the
/// old socket after the new one answered.
const CLEANUP_PASSES: u32 = 2;
const CLEANUP_SECOND_PASS: std::time::Duration = std::time::Duration::from_millis(1000);

/// One validated operation of a batch.
struct Op {
  kind: u8,
  sub: u8,
  /// `${lockPrefix}${key}`
  lk: String,
  token: String,
  ttl: u64,
  /// For an acquire: the largest fence this process has seen for the key.
  floor: u64,
  /// For an acquire: whether it takes a fencing token.
  fence: bool,
}

impl ClientInner {
  fn lock_key(&self, key: &str) -> String {
    format!("{}{}", self.settings.lock_prefix, key)
  }

  /// What Redis cannot decide: `out` gets the policy's answer at `now` for an op bound for Redis.
  fn lock_unavailable(&self, op: &Op, now: u64, out: &mut [f64]) {
    match (op.kind, op.sub) {
      (ACQUIRE, REDIS_OR_LOCAL_MODE) => {
        self
          .counters
          .fallbacks
          .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.locks.acquire(&op.lk, &op.token, op.ttl, now) {
          Some(f) => out.copy_from_slice(&[SRC_LOCAL, 1.0, f as f64]),
          None => out.copy_from_slice(&[SRC_LOCAL, 0.0, 0.0]),
        }
      }
      (ACQUIRE, LOCAL_OR_ALLOW_MODE) => out.copy_from_slice(&[SRC_ALLOW, 1.0, 0.0]),
      (ACQUIRE, _) => out.copy_from_slice(&[Code::Unavailable.as_num(), 0.0, 0.0]),
      // A release or extension Redis cannot confirm: the lease is treated as gone.
      _ => {
        self.locks.forget(&op.lk, &op.token);
        out.copy_from_slice(&[0.0, 0.0, 0.0]);
      }
    }
  }

  /// Apply Redis's answer `r` for one op, received at `now`.
  fn lock_applied(&self, op: &Op, r: i64, now: u64, out: &mut [f64]) {
    match op.kind {
      ACQUIRE if r > 0 && !op.fence => {
        self.locks.record(&op.lk, &op.token, op.ttl, now);
        out.copy_from_slice(&[SRC_REDIS, 1.0, 0.0]);
      }
      ACQUIRE if r > 0 => {
        self.locks.granted(&op.lk, r as u64, &op.token, op.ttl, now);
        out.copy_from_slice(&[SRC_REDIS, 1.0, r as f64]);
      }
      ACQUIRE => out.copy_from_slice(&[SRC_REDIS, 0.0, 0.0]),
      RELEASE => {
        self.locks.forget(&op.lk, &op.token);
        out.copy_from_slice(&[0.0, (r == 1) as u8 as f64, 0.0]);
      }
      _ => {
        if r == 1 {
          self.locks.record(&op.lk, &op.token, op.ttl, now);
        } else {
          self.locks.forget(&op.lk, &op.token);
        }
        out.copy_from_slice(&[0.0, (r == 1) as u8 as f64, 0.0]);
      }
    }
  }

  /// One `LOCK_BATCH` call for the ops `idx` (all in one slot). Per op, only what its kind
  /// uses: an acquire sends the lock key, its fence key, token, TTL and fence floor; an extend
  /// the lock key, token and TTL; a release the lock key and token.
  fn lock_call(&self, ops: &[&Op], idx: &[usize]) -> Call {
    let mut letters = String::with_capacity(idx.len());
    let mut keys = Vec::with_capacity(2 * idx.len());
    let mut args = Vec::with_capacity(2 + 3 * idx.len());
    args.push(String::new());
    args.push(FENCE_TTL_MS.to_string());
    for &i in idx {
      let op = ops[i];
      keys.push(op.lk.clone());
      args.push(op.token.clone());
      match op.kind {
        ACQUIRE if !op.fence => {
          letters.push('b');
          args.push(op.ttl.to_string());
        }
        ACQUIRE => {
          letters.push('a');
          keys.push(companion_key(&self.settings.lock_prefix, &op.lk, ":fence"));
          args.push(op.ttl.to_string());
          args.push(op.floor.to_string());
        }
        RELEASE => letters.push('r'),
        _ => {
          letters.push('e');
          args.push(op.ttl.to_string());
        }
      }
    }
    args[0] = letters;
    Call {
      script: &scripts::LOCK_BATCH,
      keys,
      args,
    }
  }

  async fn lock_run(
    self: &Arc<Self>,
    mut ops: Vec<std::result::Result<Op, GuardError>>,
  ) -> Vec<f64> {
    let n = ops.len();
    let mut out = vec![0f64; 3 * n];
    let now = now_ms();
    // What is decided here, without Redis: bad input, leases from the local table or `allow`,
    // and acquires of keys this process holds locally.
    let mut to_redis: Vec<usize> = Vec::with_capacity(n);
    for (i, op) in ops.iter_mut().enumerate() {
      let slot = &mut out[3 * i..3 * i + 3];
      match op {
        Err(e) => slot.copy_from_slice(&[e.code.as_num(), 0.0, 0.0]),
        Ok(op) => match (op.kind, op.sub) {
          (RELEASE, LOCAL_OR_ALLOW_MODE) => {
            let ok = self.locks.release(&op.lk, &op.token, now);
            slot.copy_from_slice(&[0.0, ok as u8 as f64, 0.0]);
          }
          (EXTEND, LOCAL_OR_ALLOW_MODE) => {
            let ok = self.locks.extend(&op.lk, &op.token, op.ttl, now);
            slot.copy_from_slice(&[0.0, ok as u8 as f64, 0.0]);
          }
          (RELEASE, ALLOW_OR_DENY_MODE) | (EXTEND, ALLOW_OR_DENY_MODE) => {
            slot.copy_from_slice(&[0.0, 1.0, 0.0])
          }
          // A local grant from an outage still holds the key: one process never holds a key
          // twice, whatever the source.
          (ACQUIRE, _) => match self.locks.before_grant(&op.lk, now) {
            None => slot.copy_from_slice(&[SRC_LOCAL, 0.0, 0.0]),
            Some(floor) => {
              op.floor = floor;
              to_redis.push(i);
            }
          },
          _ => to_redis.push(i),
        },
      }
    }
    if to_redis.is_empty() {
      return out;
    }
    let ok_ops: Vec<&Op> = to_redis
      .iter()
      .filter_map(|&i| ops[i].as_ref().ok())
      .collect();
    let unavailable = |me: &Self, out: &mut [f64]| {
      let now = now_ms();
      for (j, &i) in to_redis.iter().enumerate() {
        me.lock_unavailable(ok_ops[j], now, &mut out[3 * i..3 * i + 3]);
      }
    };
    if self.is_closed() {
      for &i in &to_redis {
        out[3 * i..3 * i + 3].copy_from_slice(&[Code::Closed.as_num(), 0.0, 0.0]);
      }
      return out;
    }
    if !self.usable().await {
      unavailable(self, &mut out);
      return out;
    }
    // Group by slot in a cluster (a lock key and its fence key share one); one call otherwise.
    let groups = crate::slot::groups(ok_ops.iter().map(|o| o.lk.as_bytes()), self.is_cluster());
    let calls: Vec<Call> = groups.iter().map(|g| self.lock_call(&ok_ops, g)).collect();
    let results = match self
      .run(async { Ok(scripts::run_batch(&self.redis, &calls).await) })
      .await
    {
      Ok(r) => r,
      Err(_) => {
        // The deadline fired: Redis may still apply every op of the batch.
        self.clean_up_later(
          ok_ops
            .iter()
            .map(|o| (o.lk.clone(), o.token.clone(), o.ttl)),
        );
        unavailable(self, &mut out);
        return out;
      }
    };
    // One clock read for the whole batch: the mirrors of its grants expire from here.
    let now = now_ms();
    for (g, r) in groups.iter().zip(results) {
      let replies: std::result::Result<Vec<i64>, Option<GuardError>> = match r {
        Ok(Value::Array(a)) if a.len() == g.len() => {
          Ok(a.iter().map(|v| v.as_i64().unwrap_or(-1)).collect())
        }
        Ok(_) => Err(Some(GuardError::new(
          Code::Redis,
          "unexpected reply from the lock script",
        ))),
        Err(e) => {
          let ge = self.on_error(&e);
          match ge.code {
            // Includes fred's "Failed to route command." (no connection: nothing was sent),
            // which `from_fred` classifies as unavailable. The ops may have been written:
            // cleaned up once Redis answers.
            Code::Unavailable | Code::Timeout => {
              self.clean_up_later(g.iter().map(|&j| {
                let o = ok_ops[j];
                (o.lk.clone(), o.token.clone(), o.ttl)
              }));
              Err(None)
            }
            // Redis answered but can serve no call now (BUSY, LOADING, OOM): the policy
            // decides for these calls; the circuit stays closed.
            _ if is_unusable_now(&e) => Err(None),
            _ => Err(Some(ge)),
          }
        }
      };
      for (k, &j) in g.iter().enumerate() {
        let i = to_redis[j];
        let slot = &mut out[3 * i..3 * i + 3];
        match &replies {
          Ok(r) if r[k] >= 0 => self.lock_applied(ok_ops[j], r[k], now, slot),
          // OOM inside the script (-2): nothing was written; the policy decides for this op.
          Ok(r) if r[k] == -2 => self.lock_unavailable(ok_ops[j], now, slot),
          Ok(_) => slot.copy_from_slice(&[Code::Redis.as_num(), 0.0, 0.0]),
          Err(None) => self.lock_unavailable(ok_ops[j], now, slot),
          Err(Some(e)) => slot.copy_from_slice(&[e.code.as_num(), 0.0, 0.0]),
        }
      }
    }
    out
  }
}

impl ClientInner {
  /// Lock writes whose outcome is unknown — the deadline fired, or the connection failed, after
  /// they were sent — may be applied by Redis later (a stalled server applies what it had read
  /// when it resumes). The caller was answered as if they had failed (the policy decided), so
  /// such a lock would sit in Redis for its whole TTL with nobody holding it. Once Redis answers
  /// again, each `(lock key, token, ttl)` is compare-and-deleted with the token that was sent
  /// (an acquire, an extension or a release alike: nobody holds that token now), in
  /// `CLEANUP_PASSES` passes; a lock another holder took meanwhile is never touched. Gives up
  /// after the largest TTL plus `CLEANUP_MARGIN_MS`, or when the client closes.
  fn clean_up_later(self: &Arc<Self>, doubtful: impl Iterator<Item = (String, String, u64)>) {
    let mut max_ttl = 0;
    let ops: Vec<Op> = doubtful
      .map(|(lk, token, ttl)| {
        max_ttl = max_ttl.max(ttl);
        Op {
          kind: RELEASE,
          sub: REDIS_OR_LOCAL_MODE,
          lk,
          token,
          ttl: 1,
          floor: 0,
          fence: false,
        }
      })
      .collect();
    if ops.is_empty() || self.is_closed() {
      return;
    }
    let me = self.clone();
    napi::bindgen_prelude::spawn(async move {
      let give_up = std::time::Instant::now()
        + std::time::Duration::from_millis(max_ttl.saturating_add(CLEANUP_MARGIN_MS));
      let refs: Vec<&Op> = ops.iter().collect();
      let groups = crate::slot::groups(refs.iter().map(|o| o.lk.as_bytes()), me.is_cluster());
      let mut pending: Vec<usize> = (0..groups.len()).collect();
      let mut passes = 0;
      let mut delay = std::time::Duration::from_millis(50);
      while std::time::Instant::now() < give_up && !me.is_closed() {
        tokio::time::sleep(delay).await;
        if !me.usable().await {
          delay = (delay * 2).min(std::time::Duration::from_secs(2));
          continue;
        }
        let calls: Vec<Call> = pending
          .iter()
          .map(|&g| me.lock_call(&refs, &groups[g]))
          .collect();
        let results = match me
          .run(async { Ok(scripts::run_batch(&me.redis, &calls).await) })
          .await
        {
          Ok(r) => r,
          Err(_) => continue,
        };
        let mut failed = Vec::new();
        for (&g, r) in pending.iter().zip(results) {
          match r {
            Ok(Value::Array(a)) => {
              let n = a.iter().filter(|v| v.as_i64() == Some(1)).count() as u64;
              if n > 0 {
                me.counters
                  .orphans_removed
                  .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(target: "redis_guard", client = me.id as u64,
                  "removed {n} lock(s) that Redis granted after the client had given up on them");
              }
            }
            _ => failed.push(g),
          }
        }
        if failed.is_empty() {
          passes += 1;
          if passes >= CLEANUP_PASSES {
            return;
          }
          pending = (0..groups.len()).collect();
          delay = CLEANUP_SECOND_PASS;
        } else {
          pending = failed;
          delay = (delay * 2).min(std::time::Duration::from_secs(2));
        }
      }
    });
  }
}

/// The random first half of every lock token this process makes (16 hex digits); the second
/// half is a counter kept by JS (`lib/client.js`): tokens are unique and cheap to make.
static TOKEN_PREFIX: LazyLock<String> = LazyLock::new(|| format!("{:016x}", rand::random::<u64>()));

/// The token of lock sequence number `seq`: `TOKEN_PREFIX` and 16 hex digits of `seq`.
fn token(seq: f64) -> std::result::Result<String, GuardError> {
  if !(1.0..=9_007_199_254_740_991.0).contains(&seq) || seq.fract() != 0.0 {
    return Err(GuardError::new(Code::InvalidArg, "bad lock token"));
  }
  Ok(format!("{}{:016x}", *TOKEN_PREFIX, seq as u64))
}

/// The prefix of this process's lock tokens (see `Lease.token`).
#[napi]
#[cfg_attr(test, allow(dead_code))] // called from JS only
pub fn lock_token_prefix() -> String {
  TOKEN_PREFIX.clone()
}

#[napi]
impl NativeClient {
  /// Where lock batch results go: `onDone(id, results)` (see `lockSubmit`).
  #[napi]
  pub fn set_lock_done(
    &self,
    on_done: Function<'_, FnArgs<(u32, Float64Array)>, ()>,
  ) -> Result<()> {
    self.lock_done.set(on_done)
  }

  /// Keep Node's event loop alive while lock batches are in flight (`true`), or not.
  #[napi]
  pub fn lock_keep_alive(&self, env: Env, on: bool) -> Result<()> {
    self.lock_done.keep_alive(&env, on)
  }

  /// Submit lock batch `id`. `ops[i]`: bits 0-1 the kind (0 acquire, 1 release, 2 extend); bits
  /// 2-3 for an acquire the `onUnavailable` policy (0 local, 1 allow, 2 deny), for a release or
  /// extend who granted the lease (0 Redis, 1 local, 2 allow); bit 4 for an acquire: no fencing
  /// token (fence 0 in the result). `seqs[i]` is the lease's token
  /// number (its token is `lockTokenPrefix() + 16 hex digits of it`), `ttls[i]` the TTL in ms
  /// (acquire, extend). `onDone` gets three numbers per op: status (for an acquire who decided:
  /// 0 Redis, 1 local table, 2 allow; negative: an error code), ok (1 when acquired / released /
  /// extended), fence.
  #[napi]
  pub fn lock_submit(
    &self,
    id: u32,
    ops: Uint8Array,
    keys: Vec<String>,
    seqs: Float64Array,
    ttls: Float64Array,
  ) -> Result<()> {
    let n = keys.len();
    if ops.len() != n || seqs.len() != n || ttls.len() != n {
      return Err(GuardError::new(Code::InvalidArg, "lock batch arrays differ in length").into());
    }
    // Only the copies are made here, on the JS thread; the rest runs on the tokio thread.
    let ops = ops.to_vec();
    let seqs = seqs.to_vec();
    let ttls = ttls.to_vec();
    let me = self.inner.clone();
    self.lock_done.spawn(id, n, move || async move {
      let parsed = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
          let kind = ops[i] & 3;
          let sub = (ops[i] >> 2) & 3;
          let no_fence = ops[i] & NO_FENCE != 0;
          if kind > EXTEND
            || sub > ALLOW_OR_DENY_MODE
            || ops[i] > (NO_FENCE | 15)
            || (no_fence && kind != ACQUIRE)
          {
            return Err(GuardError::new(Code::InvalidArg, "bad lock operation"));
          }
          check_key(key)?;
          let ttl = if kind == RELEASE {
            1
          } else {
            check_ttl(ttls[i])?
          };
          Ok(Op {
            kind,
            sub,
            lk: me.lock_key(key),
            token: token(seqs[i])?,
            ttl,
            floor: 0,
            fence: !no_fence,
          })
        })
        .collect();
      me.lock_run(parsed).await
    })
  }
}
