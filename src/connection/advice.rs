//! Deep health's advice: server settings that put rate limits, locks and caches at risk, each
//! a warning with a stable code and a message that says how to fix it. Read with `INFO` and
//! `CONFIG GET save` (and `CLUSTER INFO`) on every primary of a cluster, or on the server. A
//! check the user has no permission for (ACL) is skipped with a `CHECK_SKIPPED` note, never an
//! error.

use std::collections::HashMap;
use std::sync::Arc;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use napi_derive::napi;

use crate::connection::client::ClientInner;
use crate::connection::config::Topology;

/// One warning of `healthCheck({ deep: true })`.
#[napi(object)]
#[derive(Clone, Debug)]
pub struct HealthWarning {
  /// Stable: `EVICTION_POLICY`, `PERSISTENCE_OFF`, `MEMORY_NEAR_LIMIT`, `REPLICATION_LAG`,
  /// `NO_REPLICA`, `CLUSTER_STATE`, `OLD_SERVER`, `CHECK_SKIPPED`.
  pub code: String,
  /// What is at risk and how to fix it.
  pub message: String,
}

/// The oldest Redis the test suite runs against (Debian's 7.0).
const OLDEST_TESTED: (u32, u32) = (7, 0);
/// Memory use above this share of `maxmemory` is a warning.
const MEMORY_SHARE: f64 = 0.9;
/// A replica further behind than this (seconds) is a warning.
const MAX_LAG_S: i64 = 5;

fn warn(out: &mut Vec<HealthWarning>, code: &str, message: String) {
  out.push(HealthWarning {
    code: code.into(),
    message,
  });
}

/// `INFO` text as a map.
fn parse_info(text: &str) -> HashMap<String, String> {
  text
    .lines()
    .filter_map(|l| l.split_once(':'))
    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
    .collect()
}

/// The advice for one server's `INFO` and `save` setting (None: not readable). `at`: how to name
/// the server in messages ("" for a single server).
pub fn advise(
  info: &HashMap<String, String>,
  save: Option<&str>,
  at: &str,
  expect_replica: bool,
  out: &mut Vec<HealthWarning>,
) {
  let get = |k: &str| info.get(k).map(String::as_str);
  let num = |k: &str| get(k).and_then(|v| v.parse::<f64>().ok());
  if let Some(policy) = get("maxmemory_policy") {
    if policy.starts_with("allkeys-") || policy.starts_with("volatile-") {
      warn(out, "EVICTION_POLICY", format!(
        "{at}maxmemory-policy is {policy}: under memory pressure Redis may evict rate-limit counters, locks \
         and idempotency records (every key redis-guard writes has a TTL), so limits reset and a lock can be \
         granted twice. Set `maxmemory-policy noeviction` (writes then fail and redis-guard falls back), or give \
         caches a Redis of their own."));
    }
  }
  let aof = get("aof_enabled") == Some("1");
  if !aof && save.is_some_and(|s| s.trim().is_empty()) {
    warn(out, "PERSISTENCE_OFF", format!(
      "{at}persistence is off (appendonly no, save \"\"): a restart forgets every lock (another holder can then \
       be granted one that is still held) and every counter. Set `appendonly yes` with `appendfsync everysec`, \
       or RDB snapshots (`save 60 1000`), and check that a restart keeps them."));
  }
  if let (Some(used), Some(max)) = (num("used_memory"), num("maxmemory")) {
    if max > 0.0 && used > MEMORY_SHARE * max {
      warn(out, "MEMORY_NEAR_LIMIT", format!(
        "{at}memory use is {:.0}% of maxmemory ({used:.0} of {max:.0} bytes): new keys will soon be refused \
         (noeviction) or evicted. Raise maxmemory, or lower TTLs and fallbackMaxKeys-sized bursts.",
        100.0 * used / max));
    }
  }
  match get("role") {
    Some("master") => {
      let replicas = num("connected_slaves").unwrap_or(0.0) as usize;
      if replicas == 0 && expect_replica {
        warn(out, "NO_REPLICA", format!(
          "{at}the primary has no connected replica although Sentinel is configured: a failover would have \
           nothing to promote. Check the replicas' `replicaof` and their link (INFO replication)."));
      }
      for i in 0..replicas {
        let Some(line) = get(&format!("slave{i}")) else {
          continue;
        };
        let lag = line
          .split(',')
          .find_map(|f| f.strip_prefix("lag="))
          .and_then(|v| v.parse::<i64>().ok())
          .unwrap_or(0);
        if lag > MAX_LAG_S {
          warn(out, "REPLICATION_LAG", format!(
            "{at}replica {i} is {lag} s behind: a failover now loses the writes of those seconds (locks granted \
             again, counts lost). Check the replica's load and network, and `repl-backlog-size`."));
        }
      }
    }
    Some("slave") if get("master_link_status") != Some("up") => {
      warn(out, "REPLICATION_LAG", format!(
        "{at}this replica's link to its primary is down (master_link_status: {}): it serves stale data. Check \
         the primary's address and auth (`masterauth`).", get("master_link_status").unwrap_or("?")));
    }
    _ => {}
  }
  if let Some(v) = get("redis_version") {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version < OLDEST_TESTED {
      warn(out, "OLD_SERVER", format!(
        "{at}Redis {v} is older than the oldest version redis-guard is tested with ({}.{}): upgrade, or test \
         your setup with the fault suite first.", OLDEST_TESTED.0, OLDEST_TESTED.1));
    }
  }
}

/// The settings of one node (`node`: a cluster primary, or None for the server).
async fn read_node(
  me: &Arc<ClientInner>,
  node: Option<&fred::types::config::Server>,
) -> (Result<String, Error>, Result<Value, Error>) {
  let cmd = |name: &'static str| CustomCommand::new_static(name, ClusterHash::Random, false);
  let (info, save) = match node {
    Some(n) => {
      let c = me.redis.with_cluster_node(n.clone());
      (
        c.custom::<String, String>(cmd("INFO"), vec![]).await,
        c.custom::<Value, &str>(cmd("CONFIG"), vec!["GET", "save"])
          .await,
      )
    }
    None => (
      me.redis.custom::<String, String>(cmd("INFO"), vec![]).await,
      me.redis
        .custom::<Value, &str>(cmd("CONFIG"), vec!["GET", "save"])
        .await,
    ),
  };
  (info, save)
}

/// The value of `CONFIG GET save`'s reply.
fn save_of(v: &Value) -> Option<String> {
  match v {
    Value::Array(a) if a.len() >= 2 => a[1].as_string(),
    Value::Map(m) => m
      .clone()
      .inner()
      .values()
      .next()
      .and_then(|v| v.as_string()),
    _ => None,
  }
}

/// Every warning for the deployment, each check under the client's command deadline.
pub async fn check(me: &Arc<ClientInner>) -> Vec<HealthWarning> {
  let mut out = Vec::new();
  let deadline = me.settings.command_timeout * 4;
  let expect_replica = matches!(me.settings.topology, Topology::Sentinel { .. });
  let nodes: Vec<Option<fred::types::config::Server>> = if me.is_cluster() {
    me.redis
      .cached_cluster_state()
      .map(|s| s.unique_primary_nodes().into_iter().map(Some).collect())
      .unwrap_or_default()
  } else {
    vec![None]
  };
  for node in &nodes {
    let at = node
      .as_ref()
      .map(|n| format!("node {}:{}: ", n.host, n.port))
      .unwrap_or_default();
    let Ok((info, save)) = tokio::time::timeout(deadline, read_node(me, node.as_ref())).await
    else {
      warn(
        &mut out,
        "CHECK_SKIPPED",
        format!(
          "{at}the server did not answer INFO within {} ms: settings not checked.",
          deadline.as_millis()
        ),
      );
      continue;
    };
    let info = match info {
      Ok(text) => parse_info(&text),
      Err(e) => {
        warn(&mut out, "CHECK_SKIPPED", format!(
          "{at}INFO was refused ({}): eviction policy, memory, replication and version not checked. Grant `+info` to check them.",
          me.settings.mask(e.details())));
        HashMap::new()
      }
    };
    let save = match &save {
      Ok(v) => save_of(v),
      Err(e) => {
        warn(&mut out, "CHECK_SKIPPED", format!(
          "{at}CONFIG GET save was refused ({}): RDB persistence not checked. Grant `+config|get` to check it.",
          me.settings.mask(e.details())));
        None
      }
    };
    advise(&info, save.as_deref(), &at, expect_replica, &mut out);
  }
  if me.is_cluster() {
    let cmd = CustomCommand::new_static("CLUSTER", ClusterHash::Random, false);
    match tokio::time::timeout(deadline, me.redis.custom::<String, &str>(cmd, vec!["INFO"])).await {
      Ok(Ok(text)) => {
        let info = parse_info(&text);
        let state = info.get("cluster_state").map(String::as_str).unwrap_or("?");
        if state != "ok" {
          warn(&mut out, "CLUSTER_STATE", format!(
            "cluster_state is {state}: some slots have no reachable primary, so calls on their keys fall back. \
             Check `CLUSTER NODES` for failed nodes and unassigned slots."));
        }
      }
      Ok(Err(e)) => warn(
        &mut out,
        "CHECK_SKIPPED",
        format!(
          "CLUSTER INFO was refused ({}): cluster state not checked.",
          me.settings.mask(e.details())
        ),
      ),
      Err(_) => warn(
        &mut out,
        "CHECK_SKIPPED",
        "CLUSTER INFO did not answer: cluster state not checked.".into(),
      ),
    }
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  fn codes(info: &str, save: Option<&str>, replica: bool) -> Vec<String> {
    let mut out = Vec::new();
    advise(&parse_info(info), save, "", replica, &mut out);
    out.into_iter().map(|w| w.code).collect()
  }

  #[test]
  fn each_setting_its_warning() {
    let ok = "redis_version:7.0.15\r\nmaxmemory_policy:noeviction\r\naof_enabled:1\r\nrole:master\r\nconnected_slaves:0\r\n";
    assert!(codes(ok, Some(""), false).is_empty());
    assert_eq!(
      codes("maxmemory_policy:allkeys-lru", Some("3600 1"), false),
      ["EVICTION_POLICY"]
    );
    assert_eq!(
      codes("maxmemory_policy:volatile-ttl", Some("3600 1"), false),
      ["EVICTION_POLICY"]
    );
    assert_eq!(codes("aof_enabled:0", Some(""), false), ["PERSISTENCE_OFF"]);
    assert!(
      codes("aof_enabled:0", None, false).is_empty(),
      "save unreadable: not a warning"
    );
    assert_eq!(
      codes("used_memory:950\r\nmaxmemory:1000", None, false),
      ["MEMORY_NEAR_LIMIT"]
    );
    assert!(codes("used_memory:950\r\nmaxmemory:0", None, false).is_empty());
    assert_eq!(
      codes("role:master\r\nconnected_slaves:0", None, true),
      ["NO_REPLICA"]
    );
    assert_eq!(
      codes(
        "role:master\r\nconnected_slaves:1\r\nslave0:ip=1,port=2,state=online,offset=5,lag=9",
        None,
        false
      ),
      ["REPLICATION_LAG"]
    );
    assert_eq!(
      codes("role:slave\r\nmaster_link_status:down", None, false),
      ["REPLICATION_LAG"]
    );
    assert_eq!(codes("redis_version:6.2.14", None, false), ["OLD_SERVER"]);
  }
}
