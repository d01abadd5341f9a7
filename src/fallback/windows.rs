//! Per-process fixed windows for the rate-limit store while Redis is unavailable.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::local_key;

struct Window {
  hits: u64,
  reset_at: u64,
  seq: u64,
}

struct WindowsInner {
  map: HashMap<String, Window>,
  order: VecDeque<(u64, String)>,
  seq: u64,
}

/// Per-process fixed windows: `increment` counts like the Redis script does.
pub struct Windows {
  inner: Mutex<WindowsInner>,
  max_keys: usize,
}

impl Windows {
  pub fn new(max_keys: usize) -> Self {
    Windows {
      inner: Mutex::new(WindowsInner {
        map: HashMap::new(),
        order: VecDeque::new(),
        seq: 0,
      }),
      max_keys: max_keys.max(1),
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, WindowsInner> {
    self.inner.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Count one hit; returns `(hits, ms until reset)`.
  pub fn increment(&self, key: &str, window_ms: u64, reset_expiry: bool, now: u64) -> (u64, u64) {
    let key = local_key(key);
    let mut g = self.lock();
    let g = &mut *g;
    if let Some(w) = g.map.get_mut(key.as_ref()) {
      if w.reset_at > now {
        w.hits += 1;
        if reset_expiry {
          w.reset_at = now + window_ms;
        }
        return (w.hits, w.reset_at - now);
      }
    }
    let key = key.into_owned();
    // A new window. Evict expired entries from the front, then the oldest while full.
    g.seq += 1;
    let seq = g.seq;
    g.map.remove(&key);
    while let Some((s, k)) = g.order.front() {
      let stale = g.map.get(k).map(|w| w.seq != *s).unwrap_or(true);
      let expired = g.map.get(k).map(|w| w.reset_at <= now).unwrap_or(false);
      if stale || expired || g.map.len() >= self.max_keys {
        let (s, k) = g.order.pop_front().expect("front exists");
        if g.map.get(&k).map(|w| w.seq == s).unwrap_or(false) {
          g.map.remove(&k);
        }
      } else {
        break;
      }
    }
    g.map.insert(
      key.clone(),
      Window {
        hits: 1,
        reset_at: now + window_ms,
        seq,
      },
    );
    g.order.push_back((seq, key));
    Self::compact(g, self.max_keys);
    (1, window_ms)
  }

  /// `(hits, ms until reset)` or `None`.
  pub fn get(&self, key: &str, now: u64) -> Option<(u64, u64)> {
    let g = self.lock();
    g.map
      .get(local_key(key).as_ref())
      .filter(|w| w.reset_at > now)
      .map(|w| (w.hits, w.reset_at - now))
  }

  pub fn decrement(&self, key: &str, now: u64) {
    let mut g = self.lock();
    if let Some(w) = g.map.get_mut(local_key(key).as_ref()) {
      if w.reset_at > now && w.hits > 0 {
        w.hits -= 1;
      }
    }
  }

  pub fn reset(&self, key: &str) {
    let mut g = self.lock();
    g.map.remove(local_key(key).as_ref());
    Self::compact(&mut g, self.max_keys);
  }

  /// Drop queue entries of keys that were reset or restarted, once they are as many as the
  /// live ones: the queue stays within twice the key cap whatever the calls.
  fn compact(g: &mut WindowsInner, max_keys: usize) {
    if g.order.len() > 2 * max_keys {
      let WindowsInner { map, order, .. } = g;
      order.retain(|(s, k)| map.get(k).map(|w| w.seq == *s).unwrap_or(false));
    }
  }

  pub fn clear(&self) {
    let mut g = self.lock();
    g.map.clear();
    g.order.clear();
  }

  /// Number of keys held (for tests and stats).
  pub fn len(&self) -> usize {
    self.lock().map.len()
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
    assert!(w.lock().order.len() <= 2000);
    w.decrement("k99999", 2000);
    assert_eq!(w.get("k99999", 2000), Some((0, 60_000)));
  }
}
