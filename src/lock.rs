//! Distributed locks: grant (`SET NX PX` + the next fencing token, in one script), and
//! token-checked release and extend (compare-and-delete, compare-and-pexpire). When Redis is
//! unavailable the `onUnavailable` policy decides: a process-local lock table (`local`),
//! proceed (`allow`), or fail (`deny`). Waiting, leases and `withLock` live in `index.js`.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::client::{ClientInner, NativeClient};
use crate::error::{Code, GuardError};
use crate::fallback::now_ms;
use crate::scripts::{self, Call};
use crate::slot::companion_key;

/// Fence counters live this long after the last grant of their key (7 days): a fence restarts
/// only for a key unused that long.
const FENCE_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// The outcome of one grant attempt.
#[napi(object)]
pub struct LockGrant {
  /// Whether the lock was granted.
  pub acquired: bool,
  /// The random token that proves ownership (empty when not granted).
  pub token: String,
  /// The fencing token: grows with every grant of this key (0 when not granted, or when
  /// granted by `onUnavailable: 'allow'`).
  pub fence: f64,
  /// Who granted it: `redis`, `local` (the process-local table) or `allow` (nobody: Redis was
  /// unavailable and the policy let the caller proceed).
  pub source: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
  Local,
  Allow,
  Deny,
}

fn mode(s: Option<&str>) -> std::result::Result<Mode, GuardError> {
  match s.unwrap_or("local") {
    "local" => Ok(Mode::Local),
    "allow" => Ok(Mode::Allow),
    "deny" => Ok(Mode::Deny),
    _ => Err(GuardError::new(
      Code::InvalidArg,
      "option `onUnavailable` must be 'local', 'allow' or 'deny'",
    )),
  }
}

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

fn new_token() -> String {
  format!("{:032x}", rand::random::<u128>())
}

impl ClientInner {
  fn lock_key(&self, key: &str) -> String {
    format!("{}{}", self.settings.lock_prefix, key)
  }

  /// One script call under the deadline; `None` when Redis is unusable (the caller falls back).
  async fn lock_call(self: &Arc<Self>, call: Call) -> std::result::Result<Option<i64>, GuardError> {
    if self.is_closed() {
      return Err(GuardError::new(Code::Closed, "the client is closed"));
    }
    if !self.usable().await {
      return Ok(None);
    }
    let calls = [call];
    let r = match tokio::time::timeout(
      self.settings.command_timeout,
      scripts::run_batch(&self.redis, &calls),
    )
    .await
    {
      Err(_) => {
        self.on_timeout();
        return Ok(None);
      }
      Ok(mut r) => r.pop(),
    };
    match r {
      Some(Ok(v)) => Ok(Some(v.as_i64().unwrap_or(0))),
      Some(Err(e)) => {
        let ge = self.on_error(&e);
        match ge.code {
          Code::Unavailable | Code::Timeout => Ok(None),
          // No connection at all (the server just went away, the reconnect has not happened
          // yet): nothing was sent, so the circuit opens and the policy decides.
          _ if is_unrouted(&e) => {
            self.mark_down(&ge.message, false);
            Ok(None)
          }
          // Redis answered but can serve no call now (a script past busy-reply-threshold, a
          // dataset loading, out of memory): this call follows the `onUnavailable` policy, as a
          // store call falls back per item; the circuit stays closed.
          _ if is_unusable_now(&e) => Ok(None),
          _ => Err(ge),
        }
      }
      None => Ok(None),
    }
  }
}

/// fred's "Failed to route command." (kind `Unknown` without the `replicas` feature, `Routing`
/// with it): the command found no connection to write to and was never sent.
fn is_unrouted(e: &fred::error::Error) -> bool {
  matches!(
    e.kind(),
    fred::error::ErrorKind::Unknown | fred::error::ErrorKind::Routing
  ) && e.details().starts_with("Failed to route command")
}

/// `BUSY` (a script is running), `LOADING` (the dataset is loading) and `OOM` replies: nothing
/// was written and the server cannot take this call now.
fn is_unusable_now(e: &fred::error::Error) -> bool {
  let d = e.details();
  d.starts_with("BUSY ") || d.starts_with("LOADING ") || d.starts_with("OOM ")
}

fn unavailable() -> GuardError {
  GuardError::new(
    Code::Unavailable,
    "Redis is unavailable and onUnavailable is 'deny'",
  )
}

#[napi]
impl NativeClient {
  /// One attempt to take the lock `key` for `ttlMs`. Never waits: `index.js` retries.
  #[napi]
  pub async fn lock_acquire(
    &self,
    key: String,
    ttl_ms: f64,
    on_unavailable: Option<String>,
  ) -> Result<LockGrant> {
    let me = &self.inner;
    check_key(&key)?;
    let ttl = check_ttl(ttl_ms)?;
    let mode = mode(on_unavailable.as_deref())?;
    let token = new_token();
    let lk = me.lock_key(&key);
    if me.locks.is_held(&lk, now_ms()) {
      // This client holds the key already (a Redis lease, or a local lock from an outage that
      // is not released yet): one process never holds a key twice, whatever the source.
      return Ok(LockGrant {
        acquired: false,
        token: String::new(),
        fence: 0.0,
        source: "local".into(),
      });
    }
    let call = Call {
      script: &scripts::LOCK_ACQUIRE,
      keys: vec![
        lk.clone(),
        companion_key(&me.settings.lock_prefix, &lk, ":fence"),
      ],
      args: vec![
        token.clone(),
        ttl.to_string(),
        FENCE_TTL_MS.to_string(),
        me.locks.max_fence(&lk).to_string(),
      ],
    };
    match me.lock_call(call).await? {
      Some(f) if f > 0 => {
        me.locks.observe_fence(&lk, f as u64);
        me.locks.record(&lk, &token, ttl, now_ms());
        Ok(LockGrant {
          acquired: true,
          token,
          fence: f as f64,
          source: "redis".into(),
        })
      }
      Some(_) => Ok(LockGrant {
        acquired: false,
        token: String::new(),
        fence: 0.0,
        source: "redis".into(),
      }),
      None => match mode {
        Mode::Local => {
          me.counters
            .fallbacks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
          match me.locks.acquire(&lk, &token, ttl, now_ms()) {
            Some(f) => Ok(LockGrant {
              acquired: true,
              token,
              fence: f as f64,
              source: "local".into(),
            }),
            None => Ok(LockGrant {
              acquired: false,
              token: String::new(),
              fence: 0.0,
              source: "local".into(),
            }),
          }
        }
        Mode::Allow => Ok(LockGrant {
          acquired: true,
          token,
          fence: 0.0,
          source: "allow".into(),
        }),
        Mode::Deny => Err(unavailable().into()),
      },
    }
  }

  /// Release the lock if `token` still owns it (`source` as returned by the grant). `false`
  /// when it expired, was taken by someone else, or Redis cannot be asked.
  #[napi]
  pub async fn lock_release(&self, key: String, token: String, source: String) -> Result<bool> {
    let me = &self.inner;
    check_key(&key)?;
    let lk = me.lock_key(&key);
    match source.as_str() {
      "local" => Ok(me.locks.release(&lk, &token, now_ms())),
      "allow" => Ok(true),
      _ => {
        let call = Call {
          script: &scripts::LOCK_RELEASE,
          keys: vec![lk.clone()],
          args: vec![token.clone()],
        };
        let r = me.lock_call(call).await;
        me.locks.forget(&lk, &token);
        Ok(r? == Some(1))
      }
    }
  }

  /// Extend the lock to `ttlMs` from now if `token` still owns it. `false` when it was lost or
  /// Redis cannot be asked.
  #[napi]
  pub async fn lock_extend(
    &self,
    key: String,
    token: String,
    ttl_ms: f64,
    source: String,
  ) -> Result<bool> {
    let me = &self.inner;
    check_key(&key)?;
    let ttl = check_ttl(ttl_ms)?;
    let lk = me.lock_key(&key);
    match source.as_str() {
      "local" => Ok(me.locks.extend(&lk, &token, ttl, now_ms())),
      "allow" => Ok(true),
      _ => {
        let call = Call {
          script: &scripts::LOCK_EXTEND,
          keys: vec![lk.clone()],
          args: vec![token.clone(), ttl.to_string()],
        };
        let ok = me.lock_call(call).await? == Some(1);
        if ok {
          me.locks.record(&lk, &token, ttl, now_ms());
        } else {
          me.locks.forget(&lk, &token);
        }
        Ok(ok)
      }
    }
  }
}
