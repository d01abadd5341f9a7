//! What operators and the command line (`bin/redis-guard.js`) need from a client: keys,
//! memory and TTLs per prefix in one scan, deleting by pattern with progress, the locks held,
//! and the server's live figures. Every scan is `SCAN` on every primary (never `KEYS`), one
//! page of 1,000 keys at a time, each page's follow-up commands pipelined (cluster: sent one
//! by one, as slots differ within a page).

use std::collections::HashMap;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Key};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;

use crate::connection::client::{ClientInner, NativeClient};
use crate::error::{Code, GuardError};
use crate::redis::scan::{glob_escape, Pages};

/// Keys, TTLs and memory of the keys under one prefix.
#[napi(object)]
pub struct PrefixStats {
  /// The prefix (`""`: keys under none of the prefixes asked for).
  pub prefix: String,
  pub keys: f64,
  /// Keys without a TTL (redis-guard writes none: these are someone else's).
  pub without_ttl: f64,
  /// Smallest and largest TTL left, in ms (absent without keys with a TTL).
  pub ttl_min_ms: Option<f64>,
  pub ttl_max_ms: Option<f64>,
  /// `MEMORY USAGE` summed over a sample (one key in `sampleEvery`) and scaled up, in bytes.
  pub memory_bytes: f64,
}

/// The result of `scanStats`.
#[napi(object)]
pub struct ScanStats {
  /// Keys scanned (every key of every primary).
  pub scanned: f64,
  pub prefixes: Vec<PrefixStats>,
}

/// One held lock.
#[napi(object)]
pub struct HeldLock {
  pub key: String,
  /// TTL left, in ms.
  pub ttl_ms: f64,
  /// The last fencing token granted for the key (absent if none was kept).
  pub fence: Option<f64>,
}

type Progress =
  napi::threadsafe_function::ThreadsafeFunction<f64, (), f64, napi::Status, false, true>;

fn tell(p: &Option<Progress>, n: f64) {
  if let Some(p) = p {
    p.call(n, ThreadsafeFunctionCallMode::NonBlocking);
  }
}

/// One command per key of `keys` (`PTTL`, `MEMORY USAGE`, `GET`): pipelined on a standalone or
/// sentinel server, one by one in a cluster. A failed command answers `Value::Null`.
async fn per_key(me: &ClientInner, name: &'static str, pre: &[&str], keys: &[Key]) -> Vec<Value> {
  let hash = |k: &Key| ClusterHash::Custom(crate::redis::slot::key_slot(k.as_bytes()));
  let args = |k: &Key| {
    let mut a: Vec<Value> = pre.iter().map(|s| Value::from(*s)).collect();
    a.push(Value::from(k.clone()));
    a
  };
  if me.is_cluster() {
    let calls = keys.iter().map(|k| async {
      me.redis
        .custom::<Value, Value>(CustomCommand::new_static(name, hash(k), false), args(k))
        .await
        .unwrap_or(Value::Null)
    });
    futures::future::join_all(calls).await
  } else {
    let pipe = me.redis.pipeline();
    for k in keys {
      let _: std::result::Result<(), _> = pipe
        .custom(CustomCommand::new_static(name, hash(k), false), args(k))
        .await;
    }
    pipe
      .try_all::<Value>()
      .await
      .into_iter()
      .map(|r| r.unwrap_or(Value::Null))
      .collect()
  }
}

/// `MEMORY USAGE` takes a subcommand: `MEMORY USAGE key SAMPLES 0`.
async fn memory_usage(me: &ClientInner, keys: &[Key]) -> Vec<Value> {
  let hash = |k: &Key| ClusterHash::Custom(crate::redis::slot::key_slot(k.as_bytes()));
  let calls = keys.iter().map(|k| async {
    let args: Vec<Value> = vec!["USAGE".into(), Value::from(k.clone())];
    me.redis
      .custom::<Value, Value>(CustomCommand::new_static("MEMORY", hash(k), false), args)
      .await
      .unwrap_or(Value::Null)
  });
  futures::future::join_all(calls).await
}

fn usable(me: &ClientInner) -> Result<()> {
  if me.is_closed() {
    return Err(GuardError::new(Code::Closed, "the client is closed").into());
  }
  Ok(())
}

#[napi]
impl NativeClient {
  /// Keys, TTLs and memory per prefix, in one scan of every key (`SCAN`, every primary). Keys
  /// are counted under the longest prefix they start with, or `""`. `sampleEvery`: one key in
  /// so many gets a `MEMORY USAGE` (the default value is `20`). `onProgress(scanned)` after each
  /// page.
  #[napi(
    ts_args_type = "prefixes: string[], sampleEvery?: number, onProgress?: (scanned: number) => void"
  )]
  pub async fn scan_stats(
    &self,
    prefixes: Vec<String>,
    sample_every: Option<u32>,
    on_progress: Option<Progress>,
  ) -> Result<ScanStats> {
    let me = self.inner.clone();
    usable(&me)?;
    let every = sample_every.unwrap_or(20).max(1) as usize;
    let mut order = prefixes.clone();
    order.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut stats: HashMap<String, PrefixStats> = HashMap::new();
    let mut sampled: HashMap<String, (f64, f64)> = HashMap::new();
    let pattern = if prefixes.len() == 1 {
      format!("{}*", glob_escape(&prefixes[0]))
    } else {
      "*".to_string()
    };
    let mut pages = Pages::new(&me, pattern);
    let mut scanned = 0f64;
    let mut seen = 0usize;
    while let Some(keys) = pages.next().await? {
      let ttls = per_key(&me, "PTTL", &[], &keys).await;
      let picks: Vec<usize> = (0..keys.len())
        .filter(|i| (seen + i).is_multiple_of(every))
        .collect();
      let picked: Vec<Key> = picks.iter().map(|&i| keys[i].clone()).collect();
      let mem = memory_usage(&me, &picked).await;
      let mut mem_of: HashMap<usize, f64> = HashMap::new();
      for (j, &i) in picks.iter().enumerate() {
        mem_of.insert(i, mem[j].as_f64().unwrap_or(0.0));
      }
      for (i, k) in keys.iter().enumerate() {
        let name = String::from_utf8_lossy(k.as_bytes());
        let prefix = order
          .iter()
          .find(|p| name.starts_with(p.as_str()))
          .cloned()
          .unwrap_or_default();
        let s = stats.entry(prefix.clone()).or_insert_with(|| PrefixStats {
          prefix: prefix.clone(),
          keys: 0.0,
          without_ttl: 0.0,
          ttl_min_ms: None,
          ttl_max_ms: None,
          memory_bytes: 0.0,
        });
        s.keys += 1.0;
        match ttls[i].as_i64() {
          Some(t) if t >= 0 => {
            let t = t as f64;
            s.ttl_min_ms = Some(s.ttl_min_ms.map_or(t, |m| m.min(t)));
            s.ttl_max_ms = Some(s.ttl_max_ms.map_or(t, |m| m.max(t)));
          }
          Some(-1) => s.without_ttl += 1.0,
          _ => {}
        }
        if let Some(m) = mem_of.get(&i) {
          let e = sampled.entry(prefix).or_insert((0.0, 0.0));
          e.0 += m;
          e.1 += 1.0;
        }
      }
      seen += keys.len();
      scanned += keys.len() as f64;
      tell(&on_progress, scanned);
    }
    let mut out: Vec<PrefixStats> = stats
      .into_values()
      .map(|mut s| {
        if let Some((bytes, n)) = sampled.get(&s.prefix) {
          s.memory_bytes = (bytes / n * s.keys).round();
        }
        s
      })
      .collect();
    for p in &prefixes {
      if !out.iter().any(|s| &s.prefix == p) {
        out.push(PrefixStats {
          prefix: p.clone(),
          keys: 0.0,
          without_ttl: 0.0,
          ttl_min_ms: None,
          ttl_max_ms: None,
          memory_bytes: 0.0,
        });
      }
    }
    out.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    Ok(ScanStats {
      scanned,
      prefixes: out,
    })
  }

  /// Delete (or with `dryRun`, count) every key matching the `SCAN MATCH` glob `pattern`:
  /// `SCAN` + `UNLINK` on every primary, never `KEYS`. `onProgress(n)` after each page.
  /// Resolves the number of keys deleted (or matched). The default value of `dryRun` is false.
  #[napi(ts_args_type = "pattern: string, dryRun?: boolean, onProgress?: (n: number) => void")]
  pub async fn delete_matching(
    &self,
    pattern: String,
    dry_run: Option<bool>,
    on_progress: Option<Progress>,
  ) -> Result<f64> {
    let me = self.inner.clone();
    usable(&me)?;
    if pattern.is_empty() || pattern == "*" {
      return Err(
        GuardError::new(
          Code::InvalidArg,
          "refusing to delete every key: give a prefix",
        )
        .into(),
      );
    }
    if dry_run.unwrap_or(false) {
      let mut pages = Pages::new(&me, pattern);
      let mut n = 0f64;
      while let Some(keys) = pages.next().await? {
        n += keys.len() as f64;
        tell(&on_progress, n);
      }
      return Ok(n);
    }
    Ok(crate::redis::scan::delete_matching_with(&me, pattern, |n| tell(&on_progress, n)).await?)
  }

  /// The locks held under `prefix` (the default value is the client's `lockPrefix`): key,
  /// TTL left and last fence; at most `limit` (the default value is `1000`).
  #[napi]
  pub async fn held_locks(
    &self,
    prefix: Option<String>,
    limit: Option<u32>,
  ) -> Result<Vec<HeldLock>> {
    let me = self.inner.clone();
    usable(&me)?;
    let prefix = prefix.unwrap_or_else(|| me.settings.lock_prefix.clone());
    let limit = limit.unwrap_or(1000) as usize;
    let mut pages = Pages::new(&me, format!("{}*", glob_escape(&prefix)));
    let mut out = Vec::new();
    while let Some(keys) = pages.next().await? {
      let locks: Vec<Key> = keys
        .into_iter()
        .filter(|k| {
          !String::from_utf8_lossy(k.as_bytes()).ends_with(":fence")
            && !String::from_utf8_lossy(k.as_bytes()).contains("}:fence:")
        })
        .collect();
      let ttls = per_key(&me, "PTTL", &[], &locks).await;
      let fences: Vec<Key> = locks
        .iter()
        .map(|k| {
          let name = String::from_utf8_lossy(k.as_bytes());
          Key::from(crate::redis::slot::companion_key(&prefix, &name, ":fence"))
        })
        .collect();
      let fence = per_key(&me, "GET", &[], &fences).await;
      for (i, k) in locks.iter().enumerate() {
        out.push(HeldLock {
          key: String::from_utf8_lossy(k.as_bytes()).into_owned(),
          ttl_ms: ttls[i].as_f64().unwrap_or(-2.0),
          fence: fence[i].as_f64(),
        });
        if out.len() >= limit {
          return Ok(out);
        }
      }
    }
    Ok(out)
  }

  /// `INFO` of the server (cluster: of every primary, concatenated, each section headed by
  /// `# node host:port`), for `redis-guard monitor`.
  #[napi]
  pub async fn server_info(&self) -> Result<String> {
    let me = self.inner.clone();
    usable(&me)?;
    let cmd = || CustomCommand::new_static("INFO", ClusterHash::Random, false);
    if me.is_cluster() {
      let mut text = String::new();
      let nodes = me
        .redis
        .cached_cluster_state()
        .map(|s| s.unique_primary_nodes())
        .unwrap_or_default();
      for n in nodes {
        let r = me
          .run(
            me.redis
              .with_cluster_node(n.clone())
              .custom::<String, String>(cmd(), vec![]),
          )
          .await?;
        text.push_str(&format!("# node {}:{}\r\n{r}", n.host, n.port));
      }
      return Ok(text);
    }
    Ok(
      me.run(me.redis.custom::<String, String>(cmd(), vec![]))
        .await?,
    )
  }
}
