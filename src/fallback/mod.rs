//! The in-memory fallback used while Redis is unavailable: bounded fixed windows for the
//! rate-limit store, a process-local lock table for locks, and serialized entries for the query
//! cache. All hold at most `max_keys` entries; the oldest entry is evicted first, so memory and
//! per-call cost stay flat under a flood of distinct keys. The windows, the rate-limit state and
//! the cache entries live in one kind of bounded, expiring map (`bounded.rs`); the lock table
//! keeps its own rule (a full table of live locks refuses a grant rather than evict one).

mod bounded;
mod cache;
mod limits;
mod locks;
mod windows;

use std::borrow::Cow;

pub use cache::{Change, MemoryCache, CACHE_FALLBACK_MAX_BYTES};
pub use limits::{Algo, Cells, Decision, LimitOp};
pub use locks::{process_locks, Locks};
pub use windows::Windows;

/// Keys longer than this are kept as their SHA-1 (bounded memory per entry).
pub const MAX_LOCAL_KEY: usize = 256;

pub(crate) fn local_key(key: &str) -> Cow<'_, str> {
  if key.len() <= MAX_LOCAL_KEY {
    Cow::Borrowed(key)
  } else {
    Cow::Owned(format!("#sha1:{}", sha1_smol::Sha1::from(key).digest()))
  }
}
