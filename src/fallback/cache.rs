//! Per-process query-cache entries while Redis is unavailable (`onUnavailable: 'memory'` of the
//! query cache, `cache.rs`): the serialized bytes of each value with its expiry, at most
//! `max_keys` entries and `max_bytes` bytes (keys and values), the oldest evicted first.

use std::sync::Mutex;

use super::bounded::{BoundedMap, Entry};
use super::local_key;

/// Most bytes (keys and values) the memory tier of one cache holds: 64 MiB.
pub const CACHE_FALLBACK_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The serialized values by key.
type Values = BoundedMap<Vec<u8>>;

/// The live, unexpired entry of `key` (an expired one is dropped).
fn live<'a>(g: &'a mut Values, key: &str, now: u64) -> Option<&'a Entry<Vec<u8>>> {
  if g.get(key, now).is_none() {
    g.remove(key);
  }
  g.get(key, now)
}

/// What [`MemoryCache::update`] does with an entry.
pub enum Change {
  /// Leave it as it is.
  Keep,
  /// Replace it with these bytes for this many ms.
  Set(Vec<u8>, u64),
  /// Remove it.
  Delete,
}

/// A bounded map of serialized values with expiry.
pub struct MemoryCache {
  inner: Mutex<Values>,
}

impl MemoryCache {
  pub fn new(max_keys: usize, max_bytes: usize) -> Self {
    MemoryCache {
      inner: Mutex::new(BoundedMap::with_max_bytes(max_keys, max_bytes, |k, v| {
        k.len() + v.len()
      })),
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, Values> {
    self.inner.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// The value of `key` at `now` and the ms it has left, or None.
  pub fn get(&self, key: &str, now: u64) -> Option<(Vec<u8>, u64)> {
    let key = local_key(key);
    live(&mut self.lock(), &key, now).map(|e| (e.value.clone(), e.expires_at - now))
  }

  /// Store `value` for `ttl_ms` from `now`, evicting expired entries, then the oldest, while
  /// the cache is full. A value larger than the whole byte budget is not kept.
  pub fn set(&self, key: &str, value: &[u8], ttl_ms: u64, now: u64) {
    let key = local_key(key).into_owned();
    self
      .lock()
      .insert(key, value.to_vec(), now.saturating_add(ttl_ms), now);
  }

  /// Read the live value of `key` at `now` (with the ms it has left) and change it as `f`
  /// decides, under one lock: a compare-and-set for features whose records move between
  /// states (`idempotency.rs`). Returns `f`'s result.
  pub fn update<R>(
    &self,
    key: &str,
    now: u64,
    f: impl FnOnce(Option<(&[u8], u64)>) -> (Change, R),
  ) -> R {
    let key = local_key(key).into_owned();
    let mut g = self.lock();
    let (change, r) = f(live(&mut g, &key, now).map(|e| (&e.value[..], e.expires_at - now)));
    match change {
      Change::Keep => {}
      Change::Set(value, ttl) => {
        g.insert(key, value, now.saturating_add(ttl), now);
      }
      Change::Delete => {
        g.remove(&key);
      }
    }
    r
  }

  /// Forget `key`; whether it held an unexpired value.
  pub fn delete(&self, key: &str, now: u64) -> bool {
    let key = local_key(key);
    let mut g = self.lock();
    g.remove(&key).is_some_and(|e| e.expires_at > now)
  }

  pub fn clear(&self) {
    self.lock().clear();
  }

  /// Entries held (expired ones not yet dropped included).
  pub fn len(&self) -> usize {
    self.lock().len()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn entries_expire_and_stay_bounded() {
    let c = MemoryCache::new(100, 1 << 20);
    c.set("a", b"1", 1000, 0);
    assert_eq!(c.get("a", 999), Some((b"1".to_vec(), 1)));
    assert!(c.get("a", 999).is_some());
    assert_eq!(c.get("a", 1000), None);
    assert!(c.get("a", 1000).is_none());
    for i in 0..10_000 {
      c.set(&format!("k{i}"), b"v", 60_000, 2000);
    }
    assert_eq!(c.len(), 100);
    assert_eq!(c.get("k0", 2000), None, "the oldest went first");
    assert!(c.get("k9999", 2000).is_some());
    for _ in 0..1000 {
      c.set("same", b"x", 60_000, 2000);
    }
    assert!(c.lock().queued() <= 200);
    assert!(c.delete("same", 2000));
    assert!(!c.delete("same", 2000));
    c.clear();
    assert_eq!(c.len(), 0);
  }

  #[test]
  fn bytes_stay_bounded() {
    let c = MemoryCache::new(1000, 1000);
    for i in 0..50 {
      c.set(&format!("k{i}"), &[0u8; 98], 60_000, 0);
    }
    let g = c.lock();
    assert!(g.bytes() <= 1000, "{} bytes", g.bytes());
    assert_eq!(
      g.bytes(),
      g.iter()
        .map(|(k, e)| k.len() + e.value.len())
        .sum::<usize>()
    );
    drop(g);
    c.set("huge", &[0u8; 2000], 60_000, 0);
    assert!(
      c.get("huge", 0).is_none(),
      "a value over the whole budget is not kept"
    );
  }
}
