//! Idempotency keys (`IdempotencyKeys`, lib/idempotency/keys.js, and the Express middleware on
//! top of it) as a feature of the batch core (`batch/mod.rs`): claim, complete, release and
//! extend, one `IDEM_BATCH` script call per batch and cluster slot, bytes in and out.
//!
//! A key's record is one string at `${prefix}${key}`: `p:TOKEN:FINGERPRINT` while a holder
//! runs the work — a lease whose TTL is the lock TTL, extended while the work runs — then
//! `c:N:FINGERPRINT` + the result for the retention TTL. A claim is one atomic script: it
//! writes the lease when there is no record, and otherwise answers in progress (with the
//! lease's time left), completed (with the result) or mismatch (another fingerprint). The
//! token fences `complete`, `release` and `extend`: a holder whose lease expired and was taken
//! over can never overwrite the result stored by the one that took over.
//!
//! When Redis cannot decide, the `onUnavailable` policy answers: `deny` (an error: the caller
//! answers 503), `memory` (the same records in a bounded per-process map, `fallback/cache.rs`)
//! or `allow` (acquired, unprotected). A claim whose outcome is unknown (the deadline fired
//! after it was sent) is compare-and-deleted with its token once Redis answers again
//! (`batch::settle`); a completion Redis did not confirm is sent again the same way (it is
//! token-checked, so a second delivery changes nothing).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use fred::types::Value;
use napi_derive::napi;

use crate::batch::reply::{self, bytes_of};
use crate::batch::{CallIn, Failure, Feature, NativeBatcher, Out};
use crate::connection::client::{ClientInner, NativeClient};
use crate::error::{Code, GuardError};
use crate::fallback::{Change, MemoryCache, CACHE_FALLBACK_MAX_BYTES};
use crate::redis::scripts::{self, Call};

/// Idempotency op (the low two bits of an op byte): claim a key (bytes: token + fingerprint;
/// numbers: lock TTL ms, token length).
#[napi]
pub const IDEM_CLAIM: u32 = 0;
/// Idempotency op: store the result (bytes: token + result; numbers: retention TTL ms, token
/// length) if the token still holds the lease.
#[napi]
pub const IDEM_COMPLETE: u32 = 1;
/// Idempotency op: delete the record if the token still holds the lease (bytes: the token).
#[napi]
pub const IDEM_RELEASE: u32 = 2;
/// Idempotency op: extend the lease (numbers: lock TTL ms, token length) if the token holds it.
#[napi]
#[cfg_attr(test, allow(dead_code))] // used from JS only
pub const IDEM_EXTEND: u32 = 3;
/// Bits 2-3 of a complete, release or extend op byte: who granted the claim (`IDEM_REDIS`,
/// `IDEM_MEMORY`, `IDEM_ALLOW`), times this.
#[napi]
pub const IDEM_SOURCE_SHIFT: u32 = 4;

/// Source (the first result number): Redis decided.
#[napi]
pub const IDEM_REDIS: u32 = 0;
/// Source: the process-local records decided (`onUnavailable: 'memory'`).
#[napi]
pub const IDEM_MEMORY: u32 = 1;
/// Source: Redis was unavailable and `onUnavailable` is `'allow'`: acquired, unprotected.
#[napi]
pub const IDEM_ALLOW: u32 = 2;

/// Claim state (the second result number): acquired — run the work.
#[napi]
pub const IDEM_ACQUIRED: u32 = 0;
/// Claim state: another holder is running the work (the third number: its lease's ms left).
#[napi]
pub const IDEM_IN_PROGRESS: u32 = 1;
/// Claim state: completed (the result in the answer's bytes).
#[napi]
pub const IDEM_COMPLETED: u32 = 2;
/// Claim state: the key was used with another fingerprint.
#[napi]
pub const IDEM_MISMATCH: u32 = 3;

/// The longest idempotency key, in bytes (UTF-8), without the prefix. Longer keys are
/// `ERR_REDIS_GUARD_INVALID_ARG`. The value is `8192`.
#[napi]
pub const IDEM_MAX_KEY_BYTES: u32 = 8192;

/// `warnOnce` kind: a response over `maxBodyBytes` was not stored.
#[napi]
pub const IDEM_WARN_TOO_LARGE: u32 = 0;
/// `warnOnce` kind: a response was not stored because its lease was lost.
#[napi]
#[cfg_attr(test, allow(dead_code))] // used from JS only
pub const IDEM_WARN_LOST: u32 = 1;

/// The longest fingerprint, in bytes. The value is `1024`.
#[napi]
pub const IDEM_MAX_FINGERPRINT_BYTES: u32 = 1024;

const OP_CLAIM: u8 = IDEM_CLAIM as u8;
const OP_COMPLETE: u8 = IDEM_COMPLETE as u8;
const OP_RELEASE: u8 = IDEM_RELEASE as u8;
const SRC_REDIS: u8 = IDEM_REDIS as u8;
const SRC_MEMORY: u8 = IDEM_MEMORY as u8;
const SRC_ALLOW: u8 = IDEM_ALLOW as u8;

/// How long a completion or a give-back Redis did not confirm is tried again: a minute (the
/// lease it needs is gone by then unless its holder still extends it).
const SETTLE_MS: u64 = 60_000;

/// `onUnavailable`.
#[derive(Clone, Copy, PartialEq)]
enum Policy {
  Deny,
  Memory,
  Allow,
}

/// One call.
struct IdemOp {
  kind: u8,
  /// For complete, release and extend: who granted the claim.
  source: u8,
  /// The caller's key (for the memory records).
  key: String,
  /// `${prefix}${key}`.
  rk: String,
  token: String,
  /// The fingerprint (claim) or the result (complete).
  payload: String,
  ttl: u64,
}

struct IdemFeature {
  client: Arc<ClientInner>,
  prefix: String,
  policy: Policy,
  memory: MemoryCache,
  /// Whether the memory records may hold something (checked before each claim).
  memory_used: AtomicBool,
  /// The warnings logged (`warn_once`), a bit per kind.
  warned: AtomicU32,
}

/// The native half of `IdempotencyKeys` (lib/idempotency/keys.js).
#[napi]
pub struct NativeIdempotency {
  inner: Arc<IdemFeature>,
}

/// What a claim found, as `IDEM_BATCH` answers: state, ms left, result bytes.
type Claimed = (u32, u64, Vec<u8>);

/// The memory records: the same state machine as `IDEM_BATCH`, on one entry, under one lock.
fn memory_claim(op: &IdemOp, found: Option<(&[u8], u64)>) -> (Change, Claimed) {
  let Some((v, left)) = found else {
    let rec = format!("p:{}:{}", op.token, op.payload).into_bytes();
    return (Change::Set(rec, op.ttl), (IDEM_ACQUIRED, 0, Vec::new()));
  };
  let fp = op.payload.as_bytes();
  let colon = v[2.min(v.len())..]
    .iter()
    .position(|&b| b == b':')
    .map(|p| p + 2);
  let answer = match (v.get(..2), colon) {
    (Some(b"p:"), Some(e)) if &v[e + 1..] == fp => (IDEM_IN_PROGRESS, left, Vec::new()),
    (Some(b"c:"), Some(e)) => {
      let n: usize = std::str::from_utf8(&v[2..e])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
      match v.get(e + 1..).filter(|r| r.len() >= n) {
        Some(rest) if &rest[..n] == fp => (IDEM_COMPLETED, 0, rest[n..].to_vec()),
        _ => (IDEM_MISMATCH, 0, Vec::new()),
      }
    }
    _ => (IDEM_MISMATCH, 0, Vec::new()),
  };
  (Change::Keep, answer)
}

/// Complete, release or extend on the memory records: whether the token held the lease.
fn memory_held(op: &IdemOp, found: Option<(&[u8], u64)>) -> (Change, bool) {
  let pre = format!("p:{}:", op.token);
  let Some((v, _)) = found.filter(|(v, _)| v.starts_with(pre.as_bytes())) else {
    return (Change::Keep, false);
  };
  let change = match op.kind {
    OP_COMPLETE => {
      let fp = &v[pre.len()..];
      let mut rec = format!("c:{}:", fp.len()).into_bytes();
      rec.extend_from_slice(fp);
      rec.extend_from_slice(op.payload.as_bytes());
      Change::Set(rec, op.ttl)
    }
    OP_RELEASE => Change::Delete,
    _ => Change::Set(v.to_vec(), op.ttl),
  };
  (change, true)
}

impl IdemFeature {
  /// One `IDEM_BATCH` call for the ops `idx` (all in one cluster slot).
  fn batch_call(&self, ops: &[&IdemOp], idx: &[usize]) -> Call {
    let mut letters = String::with_capacity(idx.len());
    let mut args = Vec::with_capacity(1 + 3 * idx.len());
    args.push(String::new());
    for &i in idx {
      let op = ops[i];
      args.push(op.token.clone());
      match op.kind {
        OP_CLAIM | OP_COMPLETE => {
          letters.push(if op.kind == OP_CLAIM { 'c' } else { 'f' });
          args.push(op.payload.clone());
          args.push(op.ttl.to_string());
        }
        OP_RELEASE => letters.push('r'),
        _ => {
          letters.push('e');
          args.push(op.ttl.to_string());
        }
      }
    }
    args[0] = letters;
    Call {
      script: Some(&scripts::IDEM_BATCH),
      keys: idx.iter().map(|&i| ops[i].rk.clone()).collect(),
      args,
    }
  }

  /// Send `ops` (token-checked: completions, give-backs) once Redis answers again.
  fn settle_later<'o>(&self, ops: impl Iterator<Item = &'o IdemOp>) {
    let ops: Vec<&IdemOp> = ops.collect();
    if ops.is_empty() {
      return;
    }
    let groups = crate::redis::slot::groups(
      ops.iter().map(|o| o.rk.as_bytes()),
      self.client.is_cluster(),
    );
    let calls = groups.iter().map(|g| self.batch_call(&ops, g)).collect();
    crate::batch::settle::later(&self.client, calls, 1, SETTLE_MS, |_| {});
  }

  fn on_memory(&self, op: &IdemOp, now: u64, out: &mut Out<'_>) {
    let m = SRC_MEMORY as f64;
    if op.kind == OP_CLAIM {
      self.memory_used.store(true, Ordering::Relaxed);
      let (state, left, bytes) = self.memory.update(&op.key, now, |f| memory_claim(op, f));
      out.set(&[m, state as f64, left as f64]);
      if state == IDEM_COMPLETED {
        out.set_bytes(&bytes);
      }
    } else {
      let held = self.memory.update(&op.key, now, |f| memory_held(op, f));
      out.set(&[m, held as u8 as f64]);
    }
  }
}

impl Feature for IdemFeature {
  type Op = IdemOp;
  const NAME: &'static str = "idempotency";
  /// The TTL in ms, the token's length in the call's bytes.
  const WIDTH_IN: usize = 2;
  /// Source, a state (claim) or 1/0 (held), the lease's ms left (in progress), the bytes'
  /// offset and length (a completed claim's result).
  const WIDTH_OUT: usize = 5;
  const BYTES_IN: bool = true;
  const BYTES_OUT: bool = true;

  fn client(&self) -> &Arc<ClientInner> {
    &self.client
  }

  fn parse(&self, call: CallIn<'_>) -> std::result::Result<IdemOp, GuardError> {
    let bad = |m: &str| GuardError::new(Code::InvalidArg, m);
    let kind = call.op & 3;
    let source = call.op / IDEM_SOURCE_SHIFT as u8;
    if call.op > 15 || source > SRC_ALLOW || (kind == OP_CLAIM && source != 0) {
      return Err(bad("bad idempotency operation"));
    }
    if call.key.is_empty() || call.key.len() > IDEM_MAX_KEY_BYTES as usize {
      return Err(bad("the idempotency key must be 1 to 8192 bytes"));
    }
    let ttl = if kind == OP_RELEASE {
      0
    } else {
      let ttl = call.nums[0];
      if !(1.0..=crate::clock::MAX_TTL_MS).contains(&ttl) {
        return Err(bad("the TTL must be a number of ms from 1 to one year"));
      }
      ttl.ceil() as u64
    };
    let tl = call.nums[1];
    if !(1.0..=64.0).contains(&tl) || tl as usize > call.bytes.len() {
      return Err(bad("malformed idempotency token"));
    }
    let (token, payload) = call.bytes.split_at(tl as usize);
    let token = std::str::from_utf8(token).map_err(|_| bad("malformed idempotency token"))?;
    if token.contains(':') {
      return Err(bad("malformed idempotency token"));
    }
    let payload = std::str::from_utf8(payload).map_err(|_| bad("a result must be UTF-8 text"))?;
    if kind == OP_CLAIM && payload.len() > IDEM_MAX_FINGERPRINT_BYTES as usize {
      return Err(bad("the fingerprint must be at most 1024 bytes"));
    }
    Ok(IdemOp {
      kind,
      source,
      key: call.key.to_string(),
      rk: format!("{}{}", self.prefix, call.key),
      token: token.to_string(),
      payload: payload.to_string(),
      ttl,
    })
  }

  /// A completion, release or extension of a claim granted by the memory records goes there;
  /// of one granted by `allow`, there is nothing to do (answered held). A claim of a key the
  /// memory records hold (granted during an outage) is answered by them, so that a retry after
  /// Redis came back does not run the work a second time in this process.
  fn local(&self, op: &mut IdemOp, now: u64, out: &mut Out<'_>) -> bool {
    match (op.kind, op.source) {
      (OP_CLAIM, _) => {
        if !self.memory_used.load(Ordering::Relaxed) || self.memory.get(&op.key, now).is_none() {
          return false;
        }
        self.on_memory(op, now, out);
      }
      (_, SRC_MEMORY) => self.on_memory(op, now, out),
      (_, SRC_ALLOW) => out.set(&[SRC_ALLOW as f64, 1.0]),
      _ => return false,
    }
    true
  }

  fn plan(&self, ops: &[&IdemOp], cluster: bool) -> (Vec<Vec<usize>>, Vec<Call>) {
    let groups = crate::redis::slot::groups(ops.iter().map(|o| o.rk.as_bytes()), cluster);
    let calls = groups.iter().map(|g| self.batch_call(ops, g)).collect();
    (groups, calls)
  }

  fn apply(
    &self,
    op: &IdemOp,
    reply: &[Value],
    _now: u64,
    out: &mut Out<'_>,
  ) -> std::result::Result<(), Failure> {
    let failed = || {
      Failure::script_error(
        "the idempotency script failed for this key (another type, or not a record)",
      )
    };
    let r = SRC_REDIS as f64;
    match (op.kind, reply::op_reply(reply)?) {
      (OP_CLAIM, Value::Array(a)) => {
        let state = a.first().and_then(|v| v.as_i64()).ok_or_else(failed)?;
        match state {
          0 | 3 => out.set(&[r, state as f64]),
          1 => {
            let left = a.get(1).and_then(|v| v.as_i64()).unwrap_or(0).max(0);
            out.set(&[r, state as f64, left as f64]);
          }
          2 => {
            out.set(&[r, state as f64]);
            out.set_bytes(a.get(1).and_then(bytes_of).unwrap_or_default());
          }
          _ => return Err(failed()),
        }
      }
      (OP_CLAIM, _) => return Err(failed()),
      (_, Value::Integer(n)) if *n >= 0 => out.set(&[r, (*n > 0) as u8 as f64]),
      _ => return Err(failed()),
    }
    Ok(())
  }

  /// Closed or refused: the error reaches the caller. Unavailable: a claim follows the policy
  /// (`deny`: `ERR_REDIS_GUARD_UNAVAILABLE` / `ERR_REDIS_GUARD_TIMEOUT`; `memory`: the memory
  /// records; `allow`: acquired). A completion or a give-back is sent again once Redis answers
  /// (token-checked) and fails now (a completion) or answers not held (a give-back); an
  /// extension fails (the caller tries again until its lease runs out).
  fn unavailable(&self, op: &IdemOp, why: &Failure, now: u64, out: &mut Out<'_>) {
    if op.kind != OP_CLAIM {
      if op.kind == OP_RELEASE {
        self.settle_later(std::iter::once(op));
        out.set(&[SRC_REDIS as f64, 0.0]);
      } else {
        if op.kind == OP_COMPLETE {
          self.settle_later(std::iter::once(op));
        }
        out.fail(why.code());
      }
      return;
    }
    self
      .client
      .counters
      .fallbacks
      .fetch_add(1, Ordering::Relaxed);
    match self.policy {
      Policy::Deny => out.fail(why.code()),
      Policy::Memory => self.on_memory(op, now, out),
      Policy::Allow => out.set(&[SRC_ALLOW as f64, IDEM_ACQUIRED as f64]),
    }
  }

  /// A claim Redis may still apply holds a token nobody has: give it back once Redis answers.
  fn in_doubt(&self, ops: &[&IdemOp]) {
    let releases: Vec<IdemOp> = ops
      .iter()
      .filter(|o| o.kind == OP_CLAIM)
      .map(|o| IdemOp {
        kind: OP_RELEASE,
        source: SRC_REDIS,
        key: String::new(),
        rk: o.rk.clone(),
        token: o.token.clone(),
        payload: String::new(),
        ttl: 0,
      })
      .collect();
    self.settle_later(releases.iter());
  }
}

#[napi]
impl NativeIdempotency {
  /// Idempotency keys on `client` for records `${prefix}${key}` (the default prefix is
  /// `idem:`). `onUnavailable`: `deny` (reject: a payment must not run twice), `memory`
  /// (process-local records) or `allow` (acquired, unprotected); the default value is `deny`.
  /// `maxKeys`: most records of the memory tier (which also holds at most 64 MiB); the default
  /// value is the client's `fallbackMaxKeys` (100000).
  #[napi(constructor)]
  pub fn new(
    client: &NativeClient,
    prefix: Option<String>,
    on_unavailable: Option<String>,
    max_keys: Option<u32>,
  ) -> napi::Result<Self> {
    let policy = crate::batch::policy(
      on_unavailable.as_deref().unwrap_or("deny"),
      &[
        ("deny", Policy::Deny),
        ("memory", Policy::Memory),
        ("allow", Policy::Allow),
      ],
    )?;
    let client = client.inner.clone();
    let max = max_keys
      .map(|m| m as usize)
      .unwrap_or(client.settings.fallback_max_keys);
    Ok(NativeIdempotency {
      inner: Arc::new(IdemFeature {
        client,
        prefix: prefix.unwrap_or_else(|| "idem:".into()),
        policy,
        memory: MemoryCache::new(max, CACHE_FALLBACK_MAX_BYTES),
        memory_used: AtomicBool::new(false),
        warned: AtomicU32::new(0),
      }),
    })
  }

  /// The batcher: ops `IDEM_*` (with the claim's source times `IDEM_SOURCE_SHIFT`) on keys, two
  /// numbers in (a TTL in ms, the token's length) and bytes (the token, then the fingerprint
  /// or the result); five numbers out per call: source (`IDEM_REDIS`, `IDEM_MEMORY`,
  /// `IDEM_ALLOW`; negative: an error code), the state (`IDEM_ACQUIRED` ... of a claim; 1 or 0
  /// otherwise: whether the token held the lease), the lease's ms left (in progress), and the
  /// offset and length of a completed claim's result bytes (offset -1: none).
  #[napi]
  pub fn batcher(&self) -> NativeBatcher {
    NativeBatcher::new(self.inner.clone())
  }

  /// Log once per kind, through the client's logger, what the middleware did not store:
  /// `IDEM_WARN_TOO_LARGE` (a response of more than `n` bytes, `maxBodyBytes`) or
  /// `IDEM_WARN_LOST` (a response whose lease was lost: its handler ran on after the key was
  /// taken over). Returns whether this call logged.
  #[napi]
  pub fn warn_once(&self, kind: u32, n: f64) -> bool {
    let bit = 1u32 << kind.min(31);
    if self.inner.warned.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
      return false;
    }
    let id = self.inner.client.id as u64;
    if kind == IDEM_WARN_TOO_LARGE {
      tracing::warn!(target: "redis_guard", client = id,
        "idempotency: a response of more than {} bytes (maxBodyBytes) was not stored; its key was \
         released, so a retry runs the handler again (logged once)", n);
    } else {
      tracing::warn!(target: "redis_guard", client = id,
        "idempotency: a response was sent but not stored: its lease was lost (the handler ran on \
         past lockTtlMs without an extension, e.g. a paused process, and another request took \
         the key); the result of the one that took over stands (logged once)");
    }
    true
  }

  /// Records held by the memory tier now. The default value is `0` (nothing held until an outage).
  #[napi]
  pub fn fallback_size(&self) -> u32 {
    self.inner.memory.len() as u32
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn op(kind: u8, token: &str, payload: &str) -> IdemOp {
    IdemOp {
      kind,
      source: SRC_MEMORY,
      key: "k".into(),
      rk: "idem:k".into(),
      token: token.into(),
      payload: payload.into(),
      ttl: 1000,
    }
  }

  #[test]
  fn memory_records_follow_the_script() {
    let m = MemoryCache::new(10, 1 << 20);
    let claim = |t: &str, fp: &str, now| m.update("k", now, |f| memory_claim(&op(0, t, fp), f));
    assert_eq!(claim("a", "fp", 0).0, IDEM_ACQUIRED);
    assert_eq!(claim("b", "fp", 10), (IDEM_IN_PROGRESS, 990, vec![]));
    assert_eq!(claim("b", "other", 10).0, IDEM_MISMATCH);
    let held = |k, t: &str, p: &str, now| m.update("k", now, |f| memory_held(&op(k, t, p), f));
    assert!(!held(OP_COMPLETE, "b", "x", 20), "another token");
    assert!(held(3, "a", "", 20), "extended");
    assert!(held(OP_COMPLETE, "a", "result", 30));
    assert_eq!(
      claim("c", "fp", 40),
      (IDEM_COMPLETED, 0, b"result".to_vec())
    );
    assert_eq!(claim("c", "fp2", 40).0, IDEM_MISMATCH);
    assert!(
      !held(OP_RELEASE, "a", "", 50),
      "completed: nothing to release"
    );
    assert_eq!(claim("d", "fp", 2000).0, IDEM_ACQUIRED, "expired");
    assert!(held(OP_RELEASE, "d", "", 2001));
    assert_eq!(claim("e", "fp", 2002).0, IDEM_ACQUIRED);
  }
}
