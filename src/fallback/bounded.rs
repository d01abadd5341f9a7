//! The one bounded, expiring map of the in-process fallbacks (`windows.rs`, `limits.rs`,
//! `cache.rs`): at most `max_keys` entries and, for the query cache, at most `max_bytes` bytes.
//! Entries are queued in insertion order; making room for a new one evicts from the front of
//! the queue the expired entries, then the oldest while the map is full. Inserting a key again
//! moves it to the back of the queue; changing an entry in place (`get_mut`) does not.
//!
//! The map does no locking: each fallback holds it in its own `Mutex`, so that a read and the
//! write it decides (a count, a compare-and-set) happen under one lock.

use std::collections::{HashMap, VecDeque};

/// One entry of a [`BoundedMap`]: its value and when it expires.
pub struct Entry<V> {
  /// What the fallback keeps for the key.
  pub value: V,
  /// When the entry expires (ms, the fallback's clock): it is live while `expires_at > now`.
  pub expires_at: u64,
  /// Its place in the queue: a queued `(seq, key)` with another seq is stale.
  seq: u64,
}

/// A map of keys to expiring values, bounded in keys and (optionally) bytes; see the module.
pub struct BoundedMap<V> {
  map: HashMap<String, Entry<V>>,
  /// Insertion order: `(seq, key)`; an entry whose seq differs from the map's is stale.
  order: VecDeque<(u64, String)>,
  seq: u64,
  max_keys: usize,
  max_bytes: usize,
  /// What the entries count against `max_bytes`.
  bytes: usize,
  /// What one entry counts against `max_bytes`.
  size_of: fn(&str, &V) -> usize,
}

impl<V> BoundedMap<V> {
  /// A map of at most `max_keys` entries (at least 1), without a byte budget.
  pub fn new(max_keys: usize) -> Self {
    Self::with_max_bytes(max_keys, usize::MAX, |_, _| 0)
  }

  /// A map of at most `max_keys` entries (at least 1) that count at most `max_bytes` bytes (at
  /// least 1), an entry counting `size_of(key, value)`. The size of an entry is what it counts
  /// when inserted: changing its value in place must not change it.
  pub fn with_max_bytes(max_keys: usize, max_bytes: usize, size_of: fn(&str, &V) -> usize) -> Self {
    BoundedMap {
      map: HashMap::new(),
      order: VecDeque::new(),
      seq: 0,
      max_keys: max_keys.max(1),
      max_bytes: max_bytes.max(1),
      bytes: 0,
      size_of,
    }
  }

  /// The live entry of `key` at `now` (an expired one stays until evicted or removed).
  pub fn get(&self, key: &str, now: u64) -> Option<&Entry<V>> {
    self.map.get(key).filter(|e| e.expires_at > now)
  }

  /// The live entry of `key` at `now`, to change in place: its place in the queue stays.
  pub fn get_mut(&mut self, key: &str, now: u64) -> Option<&mut Entry<V>> {
    self.map.get_mut(key).filter(|e| e.expires_at > now)
  }

  /// Store `value` for `key` until `expires_at`, replacing any entry of `key` and queueing it
  /// last. Room is made first: expired entries from the front of the queue, then the oldest
  /// while the map is full (in keys, or in bytes for this entry). Returns false, with the old
  /// entry of `key` removed and nothing stored, when the entry alone is over the byte budget.
  pub fn insert(&mut self, key: String, value: V, expires_at: u64, now: u64) -> bool {
    let size = (self.size_of)(&key, &value);
    self.remove(&key);
    if size > self.max_bytes {
      return false;
    }
    while let Some((s, k)) = self.order.front() {
      let entry = self.map.get(k);
      let stale = entry.is_none_or(|e| e.seq != *s);
      let expired = entry.is_some_and(|e| e.expires_at <= now);
      let full =
        self.map.len() >= self.max_keys || self.bytes.saturating_add(size) > self.max_bytes;
      if !(stale || expired || full) {
        break;
      }
      let Some((s, k)) = self.order.pop_front() else {
        break;
      };
      if self.map.get(&k).is_some_and(|e| e.seq == s) {
        self.remove(&k);
      }
    }
    self.seq += 1;
    let seq = self.seq;
    self.bytes += size;
    self.map.insert(
      key.clone(),
      Entry {
        value,
        expires_at,
        seq,
      },
    );
    self.order.push_back((seq, key));
    // Drop the queue entries of keys removed or inserted again, once they are as many as the
    // live ones: the queue stays within twice the key cap whatever the calls.
    if self.order.len() > 2 * self.max_keys {
      let BoundedMap { map, order, .. } = self;
      order.retain(|(s, k)| map.get(k).is_some_and(|e| e.seq == *s));
    }
    true
  }

  /// Remove the entry of `key`, expired or not, and return it.
  pub fn remove(&mut self, key: &str) -> Option<Entry<V>> {
    let e = self.map.remove(key)?;
    self.bytes = self.bytes.saturating_sub((self.size_of)(key, &e.value));
    Some(e)
  }

  /// Remove every entry.
  pub fn clear(&mut self) {
    self.map.clear();
    self.order.clear();
    self.bytes = 0;
  }

  /// Entries held, expired ones not yet evicted included.
  pub fn len(&self) -> usize {
    self.map.len()
  }

  /// Entries in the queue, stale ones included (tests: the queue stays bounded).
  #[cfg(test)]
  pub fn queued(&self) -> usize {
    self.order.len()
  }

  /// What the entries count against the byte budget (tests).
  #[cfg(test)]
  pub fn bytes(&self) -> usize {
    self.bytes
  }

  /// Every entry, in no order (tests).
  #[cfg(test)]
  pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry<V>)> {
    self.map.iter().map(|(k, e)| (k.as_str(), e))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn keys(m: &BoundedMap<u32>, now: u64) -> Vec<&'static str> {
    ["a", "b", "c", "d"]
      .into_iter()
      .filter(|k| m.get(k, now).is_some())
      .collect()
  }

  /// A map of 3 keys holding "a" (until `a_until`), "b" and "c" (until 1000), inserted at 0.
  fn abc(a_until: u64) -> BoundedMap<u32> {
    let mut m = BoundedMap::new(3);
    for (k, v, until) in [("a", 1, a_until), ("b", 2, 1000), ("c", 3, 1000)] {
      m.insert(k.into(), v, until, 0);
    }
    m
  }

  #[test]
  fn expired_entries_go_first_then_the_oldest() {
    let mut m = abc(100);
    // At 100 "a" expired: it goes, although the map would otherwise have room for "d".
    m.insert("d".into(), 4, 1000, 100);
    assert_eq!(m.len(), 3);
    assert_eq!(keys(&m, 100), ["b", "c", "d"]);
    // Full and nothing expired: the oldest ("b") goes.
    m.insert("a".into(), 5, 1000, 100);
    assert_eq!(keys(&m, 100), ["a", "c", "d"]);
    assert_eq!(m.get("a", 100).map(|e| e.value), Some(5));
  }

  #[test]
  fn an_expired_entry_stays_until_evicted_or_removed() {
    let mut m = BoundedMap::new(10);
    m.insert("a".into(), 1, 100, 0);
    assert!(m.get("a", 99).is_some());
    assert!(m.get("a", 100).is_none(), "expired at its expiry");
    assert!(m.get_mut("a", 100).is_none());
    assert_eq!(m.len(), 1);
    assert_eq!(m.remove("a").map(|e| e.expires_at), Some(100));
    assert!(m.remove("a").is_none());
    assert_eq!(m.len(), 0);
  }

  #[test]
  fn capacity_is_at_least_one() {
    let mut m = BoundedMap::new(0);
    m.insert("a".into(), 1, 1000, 0);
    assert_eq!(keys(&m, 0), ["a"]);
    m.insert("b".into(), 2, 1000, 0);
    assert_eq!(keys(&m, 0), ["b"]);
    let mut m = BoundedMap::new(1);
    m.insert("a".into(), 1, 1000, 0);
    m.insert("a".into(), 2, 1000, 0);
    assert_eq!(m.get("a", 0).map(|e| e.value), Some(2));
    assert_eq!(m.len(), 1);
  }

  #[test]
  fn inserting_again_moves_a_key_last_and_changing_it_in_place_does_not() {
    let mut m = abc(1000);
    m.insert("a".into(), 10, 1000, 0);
    m.insert("d".into(), 4, 1000, 0);
    assert_eq!(keys(&m, 0), ["a", "c", "d"], "\"b\" was the oldest");
    if let Some(e) = m.get_mut("c", 0) {
      e.value = 30;
      e.expires_at = 5000;
    }
    m.insert("b".into(), 2, 1000, 0);
    assert_eq!(
      keys(&m, 0),
      ["a", "b", "d"],
      "\"c\" kept its place, the oldest"
    );
  }

  #[test]
  fn the_queue_stays_bounded() {
    let mut m = BoundedMap::new(10);
    for i in 0..1000 {
      m.insert("same".into(), i, 1000, 0);
      m.insert(format!("k{i}"), i, 1000, 0);
      m.remove(&format!("k{i}"));
    }
    assert!(m.queued() <= 20, "{} queued", m.queued());
    assert_eq!(m.len(), 1);
    m.clear();
    assert_eq!((m.len(), m.queued()), (0, 0));
  }

  #[test]
  fn bytes_stay_within_the_budget() {
    let size = |k: &str, v: &Vec<u8>| k.len() + v.len();
    let mut m = BoundedMap::with_max_bytes(100, 10, size);
    assert!(m.insert("a".into(), vec![0; 4], 1000, 0));
    assert!(m.insert("b".into(), vec![0; 4], 1000, 0));
    assert_eq!(m.bytes(), 10);
    // 5 more bytes: the oldest goes.
    assert!(m.insert("c".into(), vec![0; 4], 1000, 0));
    assert!(m.get("a", 0).is_none() && m.get("b", 0).is_some());
    assert_eq!(m.bytes(), 10);
    // Over the whole budget: not kept, and the old entry of the key is gone.
    assert!(!m.insert("b".into(), vec![0; 10], 1000, 0));
    assert!(m.get("b", 0).is_none());
    assert_eq!(m.bytes(), 5);
    assert_eq!(
      m.bytes(),
      m.iter().map(|(k, e)| size(k, &e.value)).sum::<usize>()
    );
  }
}
