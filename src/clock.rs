//! The clock: real time, never the (possibly faked) JavaScript one.

/// The longest TTL a feature takes, in ms: one year (a lock's TTL; a cache entry's TTL, and its
/// grace; an idempotency record's retention, and its lease). Longer ones are
/// `ERR_REDIS_GUARD_INVALID_ARG` (or `ERR_REDIS_GUARD_CONFIG` for an option). The value is
/// `31536000000`.
#[napi_derive::napi]
pub const MAX_TTL_MS: f64 = 365.0 * 24.0 * 3600.0 * 1000.0;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map(|d| d.as_millis() as u64)
    .unwrap_or(0)
}

/// The wall clock in ms since the epoch, read here rather than with `Date.now()`: fake-timer
/// libraries replace `Date` and `performance` in tests, and leases and windows live in Redis's
/// real time (`lib/timers.js`).
#[napi_derive::napi]
#[cfg_attr(test, allow(dead_code))] // called from JS only
pub fn clock_ms() -> f64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map(|d| d.as_secs_f64() * 1000.0)
    .unwrap_or(0.0)
}
