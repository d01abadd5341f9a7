//! Every failure redis-guard reports, mapped to a stable code.
//!
//! napi cannot attach `.code` to the rejection of an `async fn`, so the code travels in the
//! message as a `[CODE] ` prefix and `lib/errors.js` turns it into a `RedisGuardError` with `.code`
//! (the libsql-js way). Messages never contain a secret: callers pass masked text only.

use std::fmt;

/// The stable error codes. Their string forms are part of the public API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
  /// Bad options, URL, environment, TLS files: thrown synchronously at construction.
  Config,
  /// A command did not finish within its deadline.
  Timeout,
  /// Redis is not reachable (or known to be down) and the fallback policy said no.
  Unavailable,
  /// Redis answered with an error (OOM, NOPERM, WRONGTYPE, ...).
  Redis,
  /// Authentication failed (WRONGPASS, NOAUTH, NOPERM on connect).
  Auth,
  /// A bad argument to a method (not configuration).
  InvalidArg,
  /// A lock could not be acquired within `waitMs`.
  LockTimeout,
  /// A lease was lost (expired, or taken by another holder) while in use.
  LockLost,
  /// A lock operation on a lock this process does not hold.
  LockNotHeld,
  /// An operation was cancelled by an `AbortSignal`.
  Aborted,
  /// The client was closed.
  Closed,
}

impl Code {
  /// The string form, e.g. `ERR_REDIS_GUARD_CONFIG`.
  pub fn as_str(self) -> &'static str {
    match self {
      Code::Config => "ERR_REDIS_GUARD_CONFIG",
      Code::Timeout => "ERR_REDIS_GUARD_TIMEOUT",
      Code::Unavailable => "ERR_REDIS_GUARD_UNAVAILABLE",
      Code::Redis => "ERR_REDIS_GUARD_REDIS",
      Code::Auth => "ERR_REDIS_GUARD_AUTH",
      Code::InvalidArg => "ERR_REDIS_GUARD_INVALID_ARG",
      Code::LockTimeout => "ERR_REDIS_GUARD_LOCK_TIMEOUT",
      Code::LockLost => "ERR_REDIS_GUARD_LOCK_LOST",
      Code::LockNotHeld => "ERR_REDIS_GUARD_LOCK_NOT_HELD",
      Code::Aborted => "ERR_REDIS_GUARD_ABORTED",
      Code::Closed => "ERR_REDIS_GUARD_CLOSED",
    }
  }

  /// Every code, in the order of their numbers (`as_num`).
  pub const ALL: [Code; 11] = [
    Code::Config,
    Code::Timeout,
    Code::Unavailable,
    Code::Redis,
    Code::Auth,
    Code::InvalidArg,
    Code::LockTimeout,
    Code::LockLost,
    Code::LockNotHeld,
    Code::Aborted,
    Code::Closed,
  ];

  /// A small integer for the flat result arrays of batched calls (negative status values):
  /// `-(1 + its place in ALL)`.
  pub fn as_num(self) -> f64 {
    -((Code::ALL.iter().position(|c| *c == self).unwrap_or(0) + 1) as f64)
  }
}

/// Every error code, in the order of their numbers: the code of status `-n` of a batched
/// result is `errorCodes()[n - 1]` (lib/errors.js builds `codes` from this list).
#[napi_derive::napi]
#[cfg_attr(test, allow(dead_code))] // called from JS only
pub fn error_codes() -> Vec<String> {
  Code::ALL.iter().map(|c| c.as_str().to_string()).collect()
}

/// A redis-guard failure: a code and a message that holds no secret.
#[derive(Clone, Debug)]
pub struct GuardError {
  pub code: Code,
  pub message: String,
}

impl GuardError {
  pub fn new(code: Code, message: impl Into<String>) -> Self {
    GuardError {
      code,
      message: message.into(),
    }
  }
  pub fn config(message: impl Into<String>) -> Self {
    Self::new(Code::Config, message)
  }
}

impl fmt::Display for GuardError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "[{}] {}", self.code.as_str(), self.message)
  }
}

impl From<GuardError> for napi::Error {
  fn from(e: GuardError) -> Self {
    let status = match e.code {
      Code::Config | Code::InvalidArg => napi::Status::InvalidArg,
      _ => napi::Status::GenericFailure,
    };
    napi::Error::new(status, e.to_string())
  }
}

/// Classify a fred error. `mask` removes secrets that Redis or fred may echo.
pub fn from_fred(e: &fred::error::Error, mask: &dyn Fn(&str) -> String) -> GuardError {
  use fred::error::ErrorKind as K;
  let details = mask(&readable(e.details()));
  let upper = details.to_ascii_uppercase();
  let code = match e.kind() {
    K::Timeout => Code::Timeout,
    K::Auth => Code::Auth,
    K::IO | K::Canceled | K::Backpressure | K::Cluster | K::Sentinel | K::Tls | K::Routing => {
      Code::Unavailable
    }
    // fred's "Failed to route command." right after a connection dies.
    K::Unknown if upper.contains("ROUTE") || upper.contains("CONNECTION") => Code::Unavailable,
    K::Config | K::Url => Code::Config,
    _ if upper.starts_with("WRONGPASS")
      || upper.starts_with("NOAUTH")
      || upper.contains("NOPERM") =>
    {
      Code::Auth
    }
    _ => Code::Redis,
  };
  GuardError::new(code, format!("{:?}: {}", e.kind(), details))
}

/// fred formats I/O errors with `Debug` (`Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }`):
/// keep the human part.
fn readable(details: &str) -> String {
  if let Some(start) = details.find("message: \"") {
    let rest = &details[start + 10..];
    if let Some(end) = rest.find('"') {
      return rest[..end].to_string();
    }
  }
  details.to_string()
}

pub type Result<T> = std::result::Result<T, GuardError>;

/// At most `max` bytes of `s` (on a char boundary), for echoing user input in messages.
pub fn truncate(s: &str, max: usize) -> String {
  if s.len() <= max {
    return s.to_string();
  }
  let mut end = max;
  while !s.is_char_boundary(end) {
    end -= 1;
  }
  format!("{}…", &s[..end])
}
