//! Per-process query-cache entries while Redis is unavailable (`onUnavailable: 'memory'` of the
//! query cache, `cache.rs`): the serialized bytes of each value with its expiry, at most
//! `max_keys` entries and `max_bytes` bytes (keys and values), the oldest evicted first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::local_key;

/// Most bytes (keys and values) the memory tier of one cache holds: 64 MiB.
pub const CACHE_FALLBACK_MAX_BYTES: usize = 64 * 1024 * 1024;

struct Entry {
  value: Vec<u8>,
  expires_at: u64,
  seq: u64,
}

struct Inner {
  map: HashMap<String, Entry>,
  /// Insertion order: `(seq, key)`; an entry whose seq differs from the map's is stale.
  order: VecDeque<(u64, String)>,
  seq: u64,
  bytes: usize,
}

impl Inner {
  fn remove(&mut self, key: &str) -> Option<Entry> {
    let e = self.map.remove(key)?;
    self.bytes -= key.len() + e.value.len();
    Some(e)
  }

  /// The live, unexpired entry of `key` (an expired one is dropped).
  fn live(&mut self, key: &str, now: u64) -> Option<&Entry> {
    if self.map.get(key).is_some_and(|e| e.expires_at <= now) {
      self.remove(key);
    }
    self.map.get(key)
  }
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
  inner: Mutex<Inner>,
  max_keys: usize,
  max_bytes: usize,
}

impl MemoryCache {
  pub fn new(max_keys: usize, max_bytes: usize) -> Self {
    MemoryCache {
      inner: Mutex::new(Inner {
        map: HashMap::new(),
        order: VecDeque::new(),
        seq: 0,
        bytes: 0,
      }),
      max_keys: max_keys.max(1),
      max_bytes: max_bytes.max(1),
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
    self.inner.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// The value of `key` at `now` and the ms it has left, or None.
  pub fn get(&self, key: &str, now: u64) -> Option<(Vec<u8>, u64)> {
    let key = local_key(key);
    self
      .lock()
      .live(&key, now)
      .map(|e| (e.value.clone(), e.expires_at - now))
  }

  /// Store `value` for `ttl_ms` from `now`, evicting expired entries, then the oldest, while
  /// the cache is full. A value larger than the whole byte budget is not kept.
  pub fn set(&self, key: &str, value: &[u8], ttl_ms: u64, now: u64) {
    let key = local_key(key).into_owned();
    let mut g = self.lock();
    self.put(&mut g, key, value, ttl_ms, now);
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
    let (change, r) = f(g
      .live(&key, now)
      .map(|e| (&e.value[..], e.expires_at - now)));
    match change {
      Change::Keep => {}
      Change::Set(value, ttl) => self.put(&mut g, key, &value, ttl, now),
      Change::Delete => {
        g.remove(&key);
      }
    }
    r
  }

  fn put(&self, g: &mut Inner, key: String, value: &[u8], ttl_ms: u64, now: u64) {
    let size = key.len() + value.len();
    g.remove(&key);
    if size > self.max_bytes {
      return;
    }
    while let Some((s, k)) = g.order.front() {
      let entry = g.map.get(k);
      let stale = entry.map(|e| e.seq != *s).unwrap_or(true);
      let expired = entry.map(|e| e.expires_at <= now).unwrap_or(false);
      let full = g.map.len() >= self.max_keys || g.bytes + size > self.max_bytes;
      if !(stale || expired || full) {
        break;
      }
      let (s, k) = g.order.pop_front().expect("front exists");
      if g.map.get(&k).is_some_and(|e| e.seq == s) {
        g.remove(&k);
      }
    }
    g.seq += 1;
    let seq = g.seq;
    g.bytes += size;
    g.map.insert(
      key.clone(),
      Entry {
        value: value.to_vec(),
        expires_at: now.saturating_add(ttl_ms),
        seq,
      },
    );
    g.order.push_back((seq, key));
    if g.order.len() > 2 * self.max_keys {
      let Inner { map, order, .. } = g;
      order.retain(|(s, k)| map.get(k).is_some_and(|e| e.seq == *s));
    }
  }

  /// Forget `key`; whether it held an unexpired value.
  pub fn delete(&self, key: &str, now: u64) -> bool {
    let key = local_key(key);
    let mut g = self.lock();
    g.remove(&key).is_some_and(|e| e.expires_at > now)
  }

  pub fn clear(&self) {
    let mut g = self.lock();
    g.map.clear();
    g.order.clear();
    g.bytes = 0;
  }

  /// Entries held (expired ones not yet dropped included).
  pub fn len(&self) -> usize {
    self.lock().map.len()
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
    assert!(c.lock().order.len() <= 200);
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
    assert!(g.bytes <= 1000, "{} bytes", g.bytes);
    assert_eq!(
      g.bytes,
      g.map
        .iter()
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
