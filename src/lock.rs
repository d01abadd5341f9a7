//! Distributed locks as a feature of the batch core (`batch/mod.rs`): grant (`SET NX PX` + the
//! next fencing token), token-checked release (compare-and-delete) and extend
//! (compare-and-pexpire), one `LOCK_BATCH` script call per batch and cluster slot. When Redis is
//! unavailable the `onUnavailable` policy decides: the process-local lock table (`local`),
//! proceed (`allow`), or fail (`deny`). Waiting, leases and `withLock` live in `lib/lock.js`.

use std::sync::{Arc, LazyLock};

use fred::types::Value;
use napi_derive::napi;

use crate::batch::{reply, CallIn, Failure, Feature, NativeBatcher, Out};
use crate::connection::client::{ClientInner, NativeClient};
use crate::error::{Code, GuardError};
use crate::fallback::{process_locks, Locks as LocalLocks};
use crate::redis::scripts::{self, Call};
use crate::redis::slot::companion_key;

/// Fence counters live this long after the last grant of their key (7 days): a fence restarts
/// only for a key unused that long (and never below what this process has seen).
const FENCE_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// Lock op (the low two bits of an op byte): grant.
#[napi]
pub const LOCK_ACQUIRE: u32 = 0;
/// Lock op: token-checked release.
#[napi]
pub const LOCK_RELEASE: u32 = 1;
/// Lock op: token-checked extension.
#[napi]
pub const LOCK_EXTEND: u32 = 2;
/// Bit 4 of an acquire's op byte: no fencing token (`acquireLock`, which never shows one).
#[napi]
pub const LOCK_NO_FENCE: u32 = 16;

const ACQUIRE: u8 = LOCK_ACQUIRE as u8;
const RELEASE: u8 = LOCK_RELEASE as u8;
const EXTEND: u8 = LOCK_EXTEND as u8;
/// Redis runs `SET NX PX` alone for such an acquire, without the fence counter's `INCR` and
/// `PEXPIRE`.
const NO_FENCE: u8 = LOCK_NO_FENCE as u8;

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
  if !(1.0..=crate::clock::MAX_TTL_MS).contains(&ttl_ms) {
    return Err(GuardError::new(
      Code::InvalidArg,
      "the lock TTL must be a number of ms from 1 to one year",
    ));
  }
  Ok(ttl_ms as u64)
}

/// How long after a lock write whose outcome is unknown (a deadline fired) the cleanup keeps
/// trying, beyond the write's TTL: a write still queued in a stalled Redis is applied when it
/// resumes, and after its TTL it is gone by itself.
const CLEANUP_MARGIN_MS: u64 = 10_000;
/// A cleanup runs this many passes (`batch::settle`), the second a second after the first
/// succeeded: a write sent on a connection that was replaced meanwhile can still be read by
/// Redis from the old socket after the new one answered.
const CLEANUP_PASSES: u32 = 2;

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

/// The lock feature of one client.
struct LockFeature {
  client: Arc<ClientInner>,
  /// `lockPrefix`.
  prefix: String,
  /// The process-wide local lock table (shared by every client of the process).
  locks: &'static LocalLocks,
}

/// The native half of a client's locks (lib/lock.js).
#[napi]
pub struct NativeLocks {
  inner: Arc<LockFeature>,
}

impl LockFeature {
  fn lock_key(&self, key: &str) -> String {
    format!("{}{}", self.prefix, key)
  }

  /// What Redis cannot decide: `out` gets the policy's answer at `now` for an op bound for Redis.
  fn lock_unavailable(&self, op: &Op, now: u64, out: &mut [f64]) {
    match (op.kind, op.sub) {
      (ACQUIRE, REDIS_OR_LOCAL_MODE) => {
        self
          .client
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
          keys.push(companion_key(&self.prefix, &op.lk, ":fence"));
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
      script: Some(&scripts::LOCK_BATCH),
      keys,
      args,
    }
  }

  /// Lock writes whose outcome is unknown — the deadline fired, or the connection failed, after
  /// they were sent — may be applied by Redis later (a stalled server applies what it had read
  /// when it resumes). The caller was answered as if they had failed (the policy decided), so
  /// such a lock would sit in Redis for its whole TTL with nobody holding it. Once Redis answers
  /// again, each `(lock key, token, ttl)` is compare-and-deleted with the token that was sent
  /// (an acquire, an extension or a release alike: nobody holds that token now), in
  /// `CLEANUP_PASSES` passes; a lock another holder took meanwhile is never touched. Gives up
  /// after the largest TTL plus `CLEANUP_MARGIN_MS`, or when the client closes.
  fn clean_up_later(&self, doubtful: impl Iterator<Item = (String, String, u64)>) {
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
    let refs: Vec<&Op> = ops.iter().collect();
    let groups = crate::redis::slot::groups(
      refs.iter().map(|o| o.lk.as_bytes()),
      self.client.is_cluster(),
    );
    let calls = groups.iter().map(|g| self.lock_call(&refs, g)).collect();
    let client = self.client.clone();
    let id = self.client.id as u64;
    crate::batch::settle::later(
      &self.client,
      calls,
      CLEANUP_PASSES,
      max_ttl.saturating_add(CLEANUP_MARGIN_MS),
      move |reply| {
        if let Value::Array(a) = reply {
          let n = a.iter().filter(|v| v.as_i64() == Some(1)).count() as u64;
          if n > 0 {
            client
              .counters
              .orphans_removed
              .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(target: "redis_guard", client = id,
              "removed {n} lock(s) that Redis granted after the client had given up on them");
          }
        }
      },
    );
  }
}

impl Feature for LockFeature {
  const NAME: &'static str = "lock";
  type Op = Op;
  /// The token number and the TTL (ms).
  const WIDTH_IN: usize = 2;
  /// Status (for an acquire who decided; negative: an error code), ok, fence.
  const WIDTH_OUT: usize = 3;

  fn client(&self) -> &Arc<ClientInner> {
    &self.client
  }

  fn parse(&self, call: CallIn<'_>) -> std::result::Result<Op, GuardError> {
    let o = call.op;
    let kind = o & 3;
    let sub = (o >> 2) & 3;
    let no_fence = o & NO_FENCE != 0;
    if kind > EXTEND
      || sub > ALLOW_OR_DENY_MODE
      || o > (NO_FENCE | 15)
      || (no_fence && kind != ACQUIRE)
    {
      return Err(GuardError::new(Code::InvalidArg, "bad lock operation"));
    }
    check_key(call.key)?;
    let ttl = if kind == RELEASE {
      1
    } else {
      check_ttl(call.nums[1])?
    };
    Ok(Op {
      kind,
      sub,
      lk: self.lock_key(call.key),
      token: token(call.nums[0])?,
      ttl,
      floor: 0,
      fence: !no_fence,
    })
  }

  /// Leases from the local table or `allow`, and acquires of keys this process holds locally.
  fn local(&self, op: &mut Op, now: u64, out: &mut Out<'_>) -> bool {
    match (op.kind, op.sub) {
      (RELEASE, LOCAL_OR_ALLOW_MODE) => {
        let ok = self.locks.release(&op.lk, &op.token, now);
        out.set(&[0.0, ok as u8 as f64, 0.0]);
        true
      }
      (EXTEND, LOCAL_OR_ALLOW_MODE) => {
        let ok = self.locks.extend(&op.lk, &op.token, op.ttl, now);
        out.set(&[0.0, ok as u8 as f64, 0.0]);
        true
      }
      (RELEASE, ALLOW_OR_DENY_MODE) | (EXTEND, ALLOW_OR_DENY_MODE) => {
        out.set(&[0.0, 1.0, 0.0]);
        true
      }
      // A local grant from an outage still holds the key: one process never holds a key
      // twice, whatever the source.
      (ACQUIRE, _) => match self.locks.before_grant(&op.lk, now) {
        None => {
          out.set(&[SRC_LOCAL, 0.0, 0.0]);
          true
        }
        Some(floor) => {
          op.floor = floor;
          false
        }
      },
      _ => false,
    }
  }

  /// One call per slot in a cluster (a lock key and its fence key share one); one otherwise.
  fn plan(&self, ops: &[&Op], cluster: bool) -> (Vec<Vec<usize>>, Vec<Call>) {
    let groups = crate::redis::slot::groups(ops.iter().map(|o| o.lk.as_bytes()), cluster);
    let calls = groups.iter().map(|g| self.lock_call(ops, g)).collect();
    (groups, calls)
  }

  fn apply(
    &self,
    op: &Op,
    reply: &[Value],
    now: u64,
    out: &mut Out<'_>,
  ) -> std::result::Result<(), Failure> {
    match reply[0].as_i64().unwrap_or(-1) {
      r if r >= 0 => {
        self.lock_applied(op, r, now, out.nums);
        Ok(())
      }
      // OOM inside the script: nothing was written; the policy decides for this op.
      reply::OOM => Err(Failure::Unavailable(None)),
      _ => Err(Failure::script_error("the lock script failed for this key")),
    }
  }

  /// Unavailable: the policy. (Closed, `ERR_REDIS_GUARD_CLOSED`, and refused, NOPERM or a script
  /// error, fail with their code in the batch core: a lock never goes local under a permission
  /// error.)
  fn unavailable(&self, op: &Op, _why: &Failure, now: u64, out: &mut Out<'_>) {
    self.lock_unavailable(op, now, out.nums);
  }

  fn in_doubt(&self, ops: &[&Op]) {
    self.clean_up_later(ops.iter().map(|o| (o.lk.clone(), o.token.clone(), o.ttl)));
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
impl NativeLocks {
  /// The locks of `client`: keys `${lockPrefix}${key}`.
  #[napi(constructor)]
  pub fn new(client: &NativeClient) -> Self {
    let client = client.inner.clone();
    NativeLocks {
      inner: Arc::new(LockFeature {
        prefix: client.settings.lock_prefix.clone(),
        locks: process_locks(client.settings.fallback_max_keys),
        client,
      }),
    }
  }

  /// The batcher of these locks. Per call: the op byte (bits 0-1 `LOCK_ACQUIRE`,
  /// `LOCK_RELEASE` or `LOCK_EXTEND`; bits 2-3 for an acquire the `onUnavailable` policy (0
  /// local, 1 allow, 2 deny), for a release or extend who granted the lease (0 Redis, 1 local,
  /// 2 allow); `LOCK_NO_FENCE` for an acquire without a fencing token), the key, and two
  /// numbers: the lease's token number (its token is `lockTokenPrefix() + 16 hex digits of
  /// it`) and the TTL in ms. Three numbers out: status (for an acquire who decided: 0 Redis, 1
  /// local table, 2 allow; negative: an error code), ok (1 when acquired / released /
  /// extended), fence.
  #[napi]
  pub fn batcher(&self) -> NativeBatcher {
    NativeBatcher::new(self.inner.clone())
  }
}
