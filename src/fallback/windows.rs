//! Per-process fixed windows for the rate-limit store while Redis is unavailable.

use std::sync::Mutex;

use super::bounded::BoundedMap;
use super::local_key;

/// Per-process fixed windows: `increment` counts like the Redis script does. An entry is a
/// window's hits, expiring when the window resets.
pub struct Windows {
  inner: Mutex<BoundedMap<u64>>,
}

impl Windows {
  pub fn new(max_keys: usize) -> Self {
    Windows {
      inner: Mutex::new(BoundedMap::new(max_keys)),
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, BoundedMap<u64>> {
    self.inner.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Count one hit; returns `(hits, ms until reset)`.
  pub fn increment(&self, key: &str, window_ms: u64, reset_expiry: bool, now: u64) -> (u64, u64) {
    let key = local_key(key);
    let mut g = self.lock();
    if let Some(w) = g.get_mut(key.as_ref(), now) {
      w.value += 1;
      if reset_expiry {
        w.expires_at = now + window_ms;
      }
      return (w.value, w.expires_at - now);
    }
    // A new window (evicting expired entries from the front, then the oldest while full).
    g.insert(key.into_owned(), 1, now + window_ms, now);
    (1, window_ms)
  }

  /// `(hits, ms until reset)` or `None`.
  pub fn get(&self, key: &str, now: u64) -> Option<(u64, u64)> {
    let g = self.lock();
    g.get(local_key(key).as_ref(), now)
      .map(|w| (w.value, w.expires_at - now))
  }

  pub fn decrement(&self, key: &str, now: u64) {
    let mut g = self.lock();
    if let Some(w) = g.get_mut(local_key(key).as_ref(), now) {
      if w.value > 0 {
        w.value -= 1;
      }
    }
  }

  pub fn reset(&self, key: &str) {
    self.lock().remove(local_key(key).as_ref());
  }

  pub fn clear(&self) {
    self.lock().clear();
  }

  /// Number of keys held (for tests and stats).
  pub fn len(&self) -> usize {
    self.lock().len()
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  #[test]
  fn windows_count_and_stay_bounded() {
    let w = Windows::new(1000);
    assert_eq!(w.increment("a", 1000, false, 0), (1, 1000));
    assert_eq!(w.increment("a", 1000, false, 10), (2, 990));
    assert_eq!(w.increment("a", 1000, false, 1000), (1, 1000));
    for i in 0..100_000 {
      w.increment(&format!("k{i}"), 60_000, false, 2000);
    }
    assert!(w.len() <= 1000);
    for i in 0..10_000 {
      w.increment(&format!("r{i}"), 60_000, false, 3000);
      w.reset(&format!("r{i}"));
    }
    assert!(w.lock().queued() <= 2000);
    w.decrement("k99999", 2000);
    assert_eq!(w.get("k99999", 2000), Some((0, 60_000)));
  }
}
