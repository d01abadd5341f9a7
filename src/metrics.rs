//! What a client counts for `metrics()` (lib/metrics.js renders it as Prometheus text): per
//! feature, the calls, the calls answered without Redis (fallbacks) and the calls that failed;
//! and a histogram of the Redis round trip of every batch. The batch core records all of it
//! (`batch::run`), so a new feature gets these by its `Feature::NAME` alone. Relaxed atomic
//! adds, once per batch: nothing per call on the hot path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the round-trip histogram, in seconds (Prometheus `le`).
pub const BUCKETS: [f64; 12] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// One feature's counters.
#[derive(Default)]
pub struct FeatureCounters {
  pub calls: AtomicU64,
  pub batches: AtomicU64,
  pub fallbacks: AtomicU64,
  pub errors: AtomicU64,
}

/// A client's counters for metrics.
#[derive(Default)]
pub struct Metrics {
  features: RwLock<HashMap<&'static str, Arc<FeatureCounters>>>,
  /// Round trips per bucket (not cumulative), and one more for +Inf.
  buckets: [AtomicU64; BUCKETS.len() + 1],
  sum_us: AtomicU64,
  count: AtomicU64,
}

impl Metrics {
  /// The counters of feature `name` (made on first use).
  pub fn feature(&self, name: &'static str) -> Arc<FeatureCounters> {
    if let Some(f) = self
      .features
      .read()
      .unwrap_or_else(|e| e.into_inner())
      .get(name)
    {
      return f.clone();
    }
    self
      .features
      .write()
      .unwrap_or_else(|e| e.into_inner())
      .entry(name)
      .or_default()
      .clone()
  }

  /// One batch's round trip to Redis.
  pub fn round_trip(&self, d: Duration) {
    let s = d.as_secs_f64();
    let i = BUCKETS
      .iter()
      .position(|&b| s <= b)
      .unwrap_or(BUCKETS.len());
    self.buckets[i].fetch_add(1, Ordering::Relaxed);
    self
      .sum_us
      .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    self.count.fetch_add(1, Ordering::Relaxed);
  }

  /// Everything as JSON: `{ features: { name: { calls, batches, fallbacks, errors } },
  /// roundTrip: { le: [..], counts: [.. cumulative, +Inf last], sumSeconds, count } }`.
  pub fn snapshot(&self) -> serde_json::Value {
    let features: serde_json::Map<String, serde_json::Value> = self
      .features
      .read()
      .unwrap_or_else(|e| e.into_inner())
      .iter()
      .map(|(name, f)| {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
          name.to_string(),
          serde_json::json!({ "calls": g(&f.calls), "batches": g(&f.batches), "fallbacks": g(&f.fallbacks), "errors": g(&f.errors) }),
        )
      })
      .collect();
    let mut running = 0;
    let counts: Vec<u64> = self
      .buckets
      .iter()
      .map(|b| {
        running += b.load(Ordering::Relaxed);
        running
      })
      .collect();
    serde_json::json!({
      "features": features,
      "roundTrip": {
        "le": BUCKETS,
        "counts": counts,
        "sumSeconds": self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        "count": self.count.load(Ordering::Relaxed),
      }
    })
  }
}
