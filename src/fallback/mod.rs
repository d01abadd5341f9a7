//! The in-memory fallback used while Redis is unavailable: bounded fixed windows for the
//! rate-limit store and a process-local lock table for locks. Both hold at most `max_keys`
//! entries; the oldest entry is evicted first, so memory and per-call cost stay flat under a
//! flood of distinct keys.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

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

/// Keys longer than this are kept as their SHA-1 (bounded memory per entry).
pub const MAX_LOCAL_KEY: usize = 256;

fn local_key(key: &str) -> Cow<'_, str> {
  if key.len() <= MAX_LOCAL_KEY {
    Cow::Borrowed(key)
  } else {
    Cow::Owned(format!("#sha1:{}", sha1_smol::Sha1::from(key).digest()))
  }
}

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

struct LocalLock {
  token: String,
  expires_at: u64,
  /// A Redis grant mirrored by `record` (not a local grant).
  mirrored: bool,
}

/// The one local lock table of the process: every client shares it, so that two clients of one
/// process (say the default client of `acquireLock` and an app's own) still exclude each other
/// while Redis is unavailable. Its capacity is the `fallbackMaxKeys` of the first client.
pub fn process_locks(max_keys: usize) -> &'static Locks {
  static L: std::sync::OnceLock<Locks> = std::sync::OnceLock::new();
  L.get_or_init(|| Locks::new(max_keys))
}

/// Locks by key, and the largest fence seen per key.
type LockTables = (HashMap<String, LocalLock>, HashMap<String, u64>);

/// The process-local lock table used while Redis is unavailable (`onUnavailable: 'local'`).
/// Fencing tokens continue from the largest one this process has seen for the key.
pub struct Locks {
  inner: Mutex<LockTables>,
  max_keys: usize,
}

impl Locks {
  pub fn new(max_keys: usize) -> Self {
    Locks {
      inner: Mutex::new((HashMap::new(), HashMap::new())),
      max_keys: max_keys.max(1),
    }
  }

  /// Before asking Redis for `key`: `None` when a local grant (made while Redis was
  /// unavailable) still holds it at `now` — Redis must not grant it to this process meanwhile;
  /// mirrored Redis grants do not count, for those Redis itself decides. Otherwise the largest
  /// fence this process has seen or issued for the key (0 when none): a Redis grant continues
  /// above it, so fences keep growing across an outage (local grants) and a restart of Redis
  /// that lost the counter.
  pub fn before_grant(&self, key: &str, now: u64) -> Option<u64> {
    let key = local_key(key);
    let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(g.0.get(key.as_ref()), Some(l) if l.expires_at > now && !l.mirrored) {
      return None;
    }
    Some(g.1.get(key.as_ref()).copied().unwrap_or(0))
  }

  /// Redis granted `key` to `token` with `fence` until `now + ttl_ms`: remember the largest
  /// fence (local grants continue above it) and mirror the grant (see [`Locks::record`]).
  pub fn granted(&self, key: &str, fence: u64, token: &str, ttl_ms: u64, now: u64) {
    let key = local_key(key);
    let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
    match g.1.get_mut(key.as_ref()) {
      Some(f) => *f = (*f).max(fence),
      None => {
        if g.1.len() >= self.max_keys {
          g.1.clear();
        }
        g.1.insert(key.clone().into_owned(), fence);
      }
    }
    self.mirror(&mut g, key, token, ttl_ms, now);
  }

  /// Try to take the lock; `Some(fence)` when granted.
  pub fn acquire(&self, key: &str, token: &str, ttl_ms: u64, now: u64) -> Option<u64> {
    let key = local_key(key).into_owned();
    let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = g.0.get(&key) {
      if l.expires_at > now {
        return None;
      }
    }
    if g.0.len() >= self.max_keys {
      g.0.retain(|_, l| l.expires_at > now);
      if g.0.len() >= self.max_keys {
        return None;
      }
    }
    g.0.insert(
      key.clone(),
      LocalLock {
        token: token.to_string(),
        expires_at: now + ttl_ms,
        mirrored: false,
      },
    );
    if g.1.len() >= self.max_keys && !g.1.contains_key(&key) {
      g.1.clear();
    }
    let f = g.1.entry(key).or_insert(0);
    *f += 1;
    Some(*f)
  }

  /// Mirror a Redis grant (or extension) held with `token` until `now + ttl_ms`, so that the
  /// local fallback never grants the key again while this client holds it in Redis. Best effort:
  /// skipped when the table is full of live locks.
  pub fn record(&self, key: &str, token: &str, ttl_ms: u64, now: u64) {
    let key = local_key(key);
    let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
    self.mirror(&mut g, key, token, ttl_ms, now);
  }

  fn mirror(&self, g: &mut LockTables, key: Cow<'_, str>, token: &str, ttl_ms: u64, now: u64) {
    if let Some(l) = g.0.get_mut(key.as_ref()) {
      l.token.clear();
      l.token.push_str(token);
      l.expires_at = now + ttl_ms;
      l.mirrored = true;
      return;
    }
    if g.0.len() >= self.max_keys {
      g.0.retain(|_, l| l.expires_at > now);
      if g.0.len() >= self.max_keys {
        return;
      }
    }
    g.0.insert(
      key.into_owned(),
      LocalLock {
        token: token.to_string(),
        expires_at: now + ttl_ms,
        mirrored: true,
      },
    );
  }

  /// Drop the entry of `token` (a Redis lease released or lost), expired or not.
  pub fn forget(&self, key: &str, token: &str) {
    let key = local_key(key);
    let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(g.0.get(key.as_ref()), Some(l) if l.token == token) {
      g.0.remove(key.as_ref());
    }
  }

  /// Release if held with `token`.
  pub fn release(&self, key: &str, token: &str, now: u64) -> bool {
    let key = local_key(key);
    let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
    match g.0.get(key.as_ref()) {
      Some(l) if l.token == token && l.expires_at > now => {
        g.0.remove(key.as_ref());
        true
      }
      _ => false,
    }
  }

  /// Extend if held with `token`.
  pub fn extend(&self, key: &str, token: &str, ttl_ms: u64, now: u64) -> bool {
    let key = local_key(key);
    let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
    match g.0.get_mut(key.as_ref()) {
      Some(l) if l.token == token && l.expires_at > now => {
        l.expires_at = now + ttl_ms;
        true
      }
      _ => false,
    }
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

  #[test]
  fn local_locks() {
    let l = Locks::new(10);
    assert_eq!(l.acquire("k", "t1", 100, 0), Some(1));
    assert_eq!(l.acquire("k", "t2", 100, 50), None);
    assert!(!l.release("k", "t2", 60));
    assert_eq!(l.acquire("k", "t2", 100, 200), Some(2));
    assert!(!l.extend("k", "t1", 100, 210));
    assert!(l.release("k", "t2", 220));
  }

  #[test]
  fn mirrored_redis_grants() {
    let l = Locks::new(10);
    l.granted("k", 7, "r1", 100, 0);
    // a mirrored Redis grant blocks a local grant, but Redis decides for Redis grants
    assert_eq!(l.before_grant("k", 50), Some(7));
    assert_eq!(l.acquire("k", "t2", 100, 50), None);
    l.forget("k", "other");
    assert_eq!(l.acquire("k", "t2", 100, 60), None);
    l.forget("k", "r1");
    assert_eq!(l.acquire("k", "t2", 100, 60), Some(8));
    assert_eq!(l.before_grant("k", 70), None, "a local grant holds the key");
    assert_eq!(l.before_grant("k", 200), Some(8));
  }
}
