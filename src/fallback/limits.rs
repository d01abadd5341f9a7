//! The rate-limit algorithms in process, for the memory fallback: the same decisions as the
//! scripts of `redis/limits.rs` (op for op, number for number), on this host's clock, in a
//! bounded map (`bounded.rs`, as the fixed windows): at most `max_keys` entries, expired and then
//! oldest entries evicted first.
//!
//! The fixed window's express-rate-limit ops (`i`, `g`, `d`) stay in `Windows`; this map holds
//! the fixed window's `l`, `h`, `t` ops and every op of the sliding window and GCRA.

use std::sync::Mutex;

use super::bounded::BoundedMap;
use super::local_key;

/// The algorithm of a store.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Algo {
  Fixed,
  Sliding,
  Gcra,
}

/// One op's answer, as the scripts give it: hits, ms until reset, allowed, ms until a refused
/// call could pass (-1: never).
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Decision {
  pub hits: f64,
  pub reset: f64,
  pub allowed: bool,
  pub retry: f64,
}

fn d(hits: f64, reset: f64, allowed: bool, retry: f64) -> Decision {
  Decision {
    hits,
    reset,
    allowed,
    retry,
  }
}

/// What an op does to its entry.
pub enum Write {
  Keep,
  /// The new state and when it expires (ms since the epoch).
  Set([f64; 3], u64),
}

/// One op on one key, as the scripts take it.
#[derive(Clone, Copy, Debug)]
pub struct LimitOp {
  /// `b'i'`, `b'g'`, `b'd'`, `b'r'`, `b'l'`, `b'h'` or `b't'`.
  pub letter: u8,
  /// The cost (the block duration for `t`).
  pub x: f64,
  pub limit: f64,
  pub window: f64,
}

/// The fixed window's `l`, `h` and `t` (state: `[hits, 0, 0]`, expiring with the window).
fn fixed(st: Option<[f64; 3]>, exp: u64, now: u64, op: LimitOp) -> (Write, Decision) {
  let (x, lim, w) = (op.x, op.limit, op.window);
  let (fresh, mut h, t) = match st {
    Some(s) => (false, s[0], exp.saturating_sub(now) as f64),
    None => (true, 0.0, w),
  };
  let until = |ms: f64| now + ms.max(1.0) as u64;
  if op.letter == b't' {
    if h > lim {
      return (Write::Keep, d(h, t, false, t));
    }
    if fresh {
      return (Write::Set([1.0, 0.0, 0.0], until(w)), d(1.0, w, true, 0.0));
    }
    h += 1.0;
    if h > lim {
      return (Write::Set([h, 0.0, 0.0], until(x)), d(h, t, false, x));
    }
    return (Write::Set([h, 0.0, 0.0], exp), d(h, t, true, 0.0));
  }
  if x == 0.0 {
    return (Write::Keep, d(h, t, h < lim, if h < lim { 0.0 } else { t }));
  }
  if op.letter == b'l' && x > lim {
    return (Write::Keep, d(h + x, t, false, -1.0));
  }
  if op.letter == b'l' && h + x > lim {
    return (Write::Keep, d(h + x, t, false, t));
  }
  h += x;
  let e = if fresh { until(w) } else { exp };
  let ok = h <= lim;
  (
    Write::Set([h, 0.0, 0.0], e),
    d(h, t, ok, if ok { 0.0 } else { t }),
  )
}

/// The sliding window (state: `[window index, current, previous]`).
fn sliding(st: Option<[f64; 3]>, now: u64, op: LimitOp) -> (Write, Decision) {
  let (x, lim, w) = (op.x, op.limit, op.window);
  let now = now as f64;
  let cur = (now / w).floor();
  let (c, p) = match st {
    None => (0.0, 0.0),
    Some([idx, c, _]) if idx == cur - 1.0 => (0.0, c),
    Some([idx, c, p]) if idx == cur => (c, p),
    Some(_) => (0.0, 0.0),
  };
  let e = now - cur * w;
  let n = c + (p * (w - e) / w).floor();
  let retry = |cost: f64| {
    if c + cost <= lim {
      let es = w - (lim - c - cost + 1.0) * w / p;
      return es.floor() + 1.0 - e;
    }
    let m = lim - cost;
    if c <= m {
      return w - e;
    }
    let es = w - (m + 1.0) * w / c;
    w - e + es.floor() + 1.0
  };
  let save = |c: f64| Write::Set([cur, c, p], (now + 2.0 * w - e) as u64);
  match op.letter {
    b'g' => match st {
      None => (Write::Keep, d(-1.0, -2.0, true, 0.0)),
      Some(_) => (Write::Keep, d(n, w - e, true, 0.0)),
    },
    b'd' => match st {
      None => (Write::Keep, d(-1.0, -2.0, true, 0.0)),
      Some(_) if c > 0.0 => (save(c - 1.0), d(n - 1.0, w - e, true, 0.0)),
      Some(_) => (Write::Keep, d(n, w - e, true, 0.0)),
    },
    _ if x == 0.0 => {
      if n < lim {
        (Write::Keep, d(n, w - e, true, 0.0))
      } else {
        (Write::Keep, d(n, w - e, false, retry(1.0)))
      }
    }
    b'l' if x > lim => (Write::Keep, d(n + x, w - e, false, -1.0)),
    b'l' if n + x > lim => (Write::Keep, d(n + x, w - e, false, retry(x))),
    b'l' => (save(c + x), d(n + x, w - e, true, 0.0)),
    // `i`, `h`: count always.
    _ if n + x <= lim => (save(c + x), d(n + x, w - e, true, 0.0)),
    _ => {
      let c2 = c + x;
      let es = |cc: f64| {
        if cc + 1.0 <= lim {
          (w - (lim - cc) * w / p).floor() + 1.0 - e
        } else if cc <= lim - 1.0 {
          w - e
        } else {
          w - e + (w - lim * w / cc).floor() + 1.0
        }
      };
      (save(c2), d(n + x, w - e, false, es(c2)))
    }
  }
}

/// GCRA (state: `[TAT, 0, 0]`), `burst` 0 meaning the limit.
fn gcra(st: Option<[f64; 3]>, now_ms: f64, op: LimitOp, burst: f64) -> (Write, Decision) {
  let (x, lim, w) = (op.x, op.limit, op.window);
  let now = now_ms;
  let t = w / lim;
  let b = if burst > 0.0 { burst } else { lim };
  let tau = b * t;
  let used = |dd: f64| {
    if dd <= 0.0 {
      0.0
    } else {
      (dd / t - 1e-9).ceil()
    }
  };
  let tat = st.map(|s| s[0]).unwrap_or(now).max(now);
  let until = |at: f64| at.ceil() as u64;
  match op.letter {
    b'g' => match st {
      None => (Write::Keep, d(-1.0, -2.0, true, 0.0)),
      Some(_) => (
        Write::Keep,
        d(used(tat - now), (tat - now).ceil(), true, 0.0),
      ),
    },
    b'd' => match st {
      None => (Write::Keep, d(-1.0, -2.0, true, 0.0)),
      Some(_) => {
        let nt = tat - t;
        if nt <= now {
          // At zero; the entry stays for a window, as the fixed window's does.
          (
            Write::Set([now, 0.0, 0.0], until(now + w)),
            d(0.0, 0.0, true, 0.0),
          )
        } else {
          (
            Write::Set([nt, 0.0, 0.0], until(nt)),
            d(used(nt - now), (nt - now).ceil(), true, 0.0),
          )
        }
      }
    },
    _ if x == 0.0 => {
      let nt = tat + t;
      let ok = nt - now <= tau + 1e-6;
      let retry = if ok { 0.0 } else { (nt - tau - now).ceil() };
      (
        Write::Keep,
        d(used(tat - now), (tat - now).ceil(), ok, retry),
      )
    }
    b'i' | b'h' => {
      // Count always.
      let nt = tat + x * t;
      let set = Write::Set([nt, 0.0, 0.0], until(nt).max(now as u64 + 1));
      if nt - now <= tau + 1e-6 {
        (set, d(used(nt - now), (nt - now).ceil(), true, 0.0))
      } else {
        let retry = (nt + t - tau - now).ceil().max(1.0);
        (set, d(used(nt - now), (nt - now).ceil(), false, retry))
      }
    }
    _ if x > b => (
      Write::Keep,
      d(used(tat - now) + x, (tat - now).ceil(), false, -1.0),
    ),
    _ => {
      let nt = tat + x * t;
      if nt - now > tau + 1e-6 {
        let retry = (nt - tau - now).ceil().max(1.0);
        return (
          Write::Keep,
          d(used(nt - now), (tat - now).ceil(), false, retry),
        );
      }
      (
        Write::Set([nt, 0.0, 0.0], until(nt).max(now as u64 + 1)),
        d(used(nt - now), (nt - now).ceil().max(1.0), true, 0.0),
      )
    }
  }
}

/// Per-process rate-limit state for the memory fallback, bounded: an entry is an algorithm's
/// state (see `fixed`, `sliding`, `gcra`) with its expiry.
pub struct Cells {
  inner: Mutex<BoundedMap<[f64; 3]>>,
}

impl Cells {
  pub fn new(max_keys: usize) -> Self {
    Cells {
      inner: Mutex::new(BoundedMap::new(max_keys)),
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, BoundedMap<[f64; 3]>> {
    self.inner.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Run `op` of `algo` on `key` at `now` (ms, this host's clock).
  pub fn run(&self, algo: Algo, key: &str, op: LimitOp, burst: f64, now_ms: f64) -> Decision {
    let key = local_key(key);
    let now = now_ms as u64;
    let mut g = self.lock();
    if op.letter == b'r' {
      // as Redis's DEL counts: an expired entry is already gone
      let had = g.remove(key.as_ref()).is_some_and(|c| c.expires_at > now);
      return d(had as u8 as f64, 0.0, true, 0.0);
    }
    let live = g.get(key.as_ref(), now).map(|c| (c.value, c.expires_at));
    let (write, decision) = match algo {
      Algo::Fixed => fixed(live.map(|l| l.0), live.map(|l| l.1).unwrap_or(0), now, op),
      Algo::Sliding => sliding(live.map(|l| l.0), now, op),
      Algo::Gcra => gcra(live.map(|l| l.0), now_ms, op, burst),
    };
    match write {
      Write::Keep => {}
      Write::Set(state, expires_at) => {
        if let Some(c) = g.get_mut(key.as_ref(), now) {
          c.value = state;
          c.expires_at = expires_at;
          return decision;
        }
        // Evicting expired entries from the front, then the oldest while full.
        g.insert(key.into_owned(), state, expires_at, now);
      }
    }
    decision
  }

  pub fn clear(&self) {
    self.lock().clear();
  }

  pub fn len(&self) -> usize {
    self.lock().len()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn lim(x: f64, limit: f64, window: f64) -> LimitOp {
    LimitOp {
      letter: b'l',
      x,
      limit,
      window,
    }
  }

  #[test]
  fn a_reset_counts_only_a_live_entry() {
    let c = Cells::new(10);
    let reset = LimitOp {
      letter: b'r',
      x: 0.0,
      limit: 0.0,
      window: 0.0,
    };
    c.run(Algo::Fixed, "a", lim(1.0, 10.0, 1000.0), 0.0, 0.0);
    c.run(Algo::Fixed, "b", lim(1.0, 10.0, 1000.0), 0.0, 0.0);
    assert_eq!(c.run(Algo::Fixed, "a", reset, 0.0, 500.0).hits, 1.0);
    // b's window ended at 1000: gone, as Redis's DEL would count it
    assert_eq!(c.run(Algo::Fixed, "b", reset, 0.0, 1500.0).hits, 0.0);
  }

  #[test]
  fn sliding_weighs_the_previous_window() {
    let c = Cells::new(100);
    // 10 at the end of window 0 (t = 900 of 1000) ...
    for _ in 0..10 {
      assert!(
        c.run(Algo::Sliding, "a", lim(1.0, 10.0, 1000.0), 0.0, 900.0)
          .allowed
      );
    }
    let no = c.run(Algo::Sliding, "a", lim(1.0, 10.0, 1000.0), 0.0, 950.0);
    assert!(!no.allowed);
    // at t = 1001 the previous window weighs floor(10 x 0.999) = 9: 51 ms to wait.
    assert_eq!(no.retry, 51.0);
    // ... at t = 1100 the previous window still weighs 9: one more passes, then none.
    assert!(
      c.run(Algo::Sliding, "a", lim(1.0, 10.0, 1000.0), 0.0, 1100.0)
        .allowed
    );
    let no = c.run(Algo::Sliding, "a", lim(1.0, 10.0, 1000.0), 0.0, 1100.0);
    assert!(!no.allowed && no.retry > 0.0, "{no:?}");
    // cost over the limit: never.
    assert_eq!(
      c.run(Algo::Sliding, "a", lim(11.0, 10.0, 1000.0), 0.0, 1100.0)
        .retry,
      -1.0
    );
  }

  #[test]
  fn gcra_spaces_calls() {
    let c = Cells::new(100);
    // 10 per second, burst 10: 10 at once, then one every 100 ms.
    for _ in 0..10 {
      assert!(
        c.run(Algo::Gcra, "a", lim(1.0, 10.0, 1000.0), 0.0, 0.0)
          .allowed
      );
    }
    let no = c.run(Algo::Gcra, "a", lim(1.0, 10.0, 1000.0), 0.0, 0.0);
    assert!(!no.allowed);
    assert_eq!(no.retry, 100.0);
    assert!(
      c.run(Algo::Gcra, "a", lim(1.0, 10.0, 1000.0), 0.0, 100.0)
        .allowed
    );
    assert!(
      !c.run(Algo::Gcra, "a", lim(1.0, 10.0, 1000.0), 0.0, 150.0)
        .allowed
    );
  }

  #[test]
  fn cells_stay_bounded() {
    let c = Cells::new(1000);
    for i in 0..50_000 {
      c.run(
        Algo::Gcra,
        &format!("k{i}"),
        lim(1.0, 10.0, 60_000.0),
        0.0,
        1.0,
      );
    }
    assert!(c.len() <= 1000);
    assert!(c.lock().queued() <= 2000);
  }
}
