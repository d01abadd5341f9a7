//! The process-local lock table used while Redis is unavailable.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use super::local_key;

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
type LockTables = (HashMap<String, LocalLock>, Fences);

/// The largest fence seen per key, bounded: when full it is emptied, and `floor` keeps the
/// largest fence it held, so a key it forgot continues above every fence it ever knew (a fence
/// may jump, never go back).
#[derive(Default)]
struct Fences {
  by_key: HashMap<String, u64>,
  floor: u64,
}

impl Fences {
  /// The largest fence seen for `key` (the floor for a key not held).
  fn get(&self, key: &str) -> u64 {
    self.by_key.get(key).copied().unwrap_or(self.floor)
  }

  /// Set `key`'s fence to `f(its fence)` (the floor for a key not held) and return it; the
  /// table is emptied first when it is full and `key` is new.
  fn bump(&mut self, key: &str, max_keys: usize, f: impl FnOnce(u64) -> u64) -> u64 {
    if let Some(v) = self.by_key.get_mut(key) {
      *v = f(*v);
      return *v;
    }
    if self.by_key.len() >= max_keys {
      self.floor = self.by_key.values().copied().fold(self.floor, u64::max);
      self.by_key.clear();
    }
    let v = f(self.floor);
    self.by_key.insert(key.to_owned(), v);
    v
  }
}

/// The process-local lock table used while Redis is unavailable (`onUnavailable: 'local'`).
/// Fencing tokens continue from the largest one this process has seen for the key.
pub struct Locks {
  inner: Mutex<LockTables>,
  max_keys: usize,
}

impl Locks {
  pub fn new(max_keys: usize) -> Self {
    Locks {
      inner: Mutex::new((HashMap::new(), Fences::default())),
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
    Some(g.1.get(key.as_ref()))
  }

  /// Redis granted `key` to `token` with `fence` until `now + ttl_ms`: remember the largest
  /// fence (local grants continue above it) and mirror the grant (see [`Locks::record`]).
  pub fn granted(&self, key: &str, fence: u64, token: &str, ttl_ms: u64, now: u64) {
    let key = local_key(key);
    let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
    g.1.bump(&key, self.max_keys, |f| f.max(fence));
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
    Some(g.1.bump(&key, self.max_keys, |f| f + 1))
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

  #[test]
  fn fences_never_go_back_when_the_table_is_emptied() {
    let l = Locks::new(2);
    l.granted("a", 40, "r1", 10, 0);
    assert_eq!(l.acquire("b", "t", 10, 0), Some(1));
    // a third key (the two locks expired) empties the full fence table: it and every forgotten
    // key continue above 40
    assert_eq!(l.acquire("c", "t", 10, 20), Some(41));
    assert_eq!(l.before_grant("a", 100), Some(40));
    assert_eq!(l.acquire("a", "t", 10, 100), Some(41));
    assert_eq!(
      l.acquire("b", "t", 10, 100),
      Some(42),
      "b was at 1, continues above the floor"
    );
  }
}
