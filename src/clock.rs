//! The clock: real time, never the (possibly faked) JavaScript one.

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
