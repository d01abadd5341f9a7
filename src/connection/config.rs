//! Configuration: explicit options, `REDIS_URL`, `REDIS_HOST`/... and Railway's names, resolved
//! once at construction into a validated [`Settings`]. Every error is a `Code::Config`
//! `GuardError` whose message never contains the password.
//!
//! The rest of the crate never reads the environment: `lib/client.js` passes the relevant variables.

use std::collections::HashMap;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::error::{GuardError, Result};

/// Where the servers are.
#[derive(Clone, Debug, PartialEq)]
pub enum Topology {
  Standalone {
    host: String,
    port: u16,
  },
  Cluster {
    nodes: Vec<(String, u16)>,
  },
  Sentinel {
    nodes: Vec<(String, u16)>,
    name: String,
    username: Option<String>,
    password: Option<String>,
  },
}

/// Resolved TLS settings: PEM texts, already read from files.
#[derive(Clone, Default)]
pub struct TlsSettings {
  pub ca: Option<String>,
  pub cert: Option<String>,
  pub key: Option<String>,
  pub servername: Option<String>,
  pub insecure: bool,
}

/// The validated configuration of one client.
#[derive(Clone)]
pub struct Settings {
  pub topology: Topology,
  pub username: Option<String>,
  pub password: Option<String>,
  pub db: Option<u8>,
  pub tls: Option<TlsSettings>,
  pub command_timeout: Duration,
  pub connect_timeout: Duration,
  pub max_command_buffer: usize,
  pub reconnect_min_ms: u32,
  pub reconnect_max_ms: u32,
  pub reconnect_jitter_ms: u32,
  pub lock_prefix: String,
  pub fallback_max_keys: usize,
  pub probe_interval: Duration,
  /// Warnings to log once (ignored variables).
  pub warnings: Vec<String>,
}

impl std::fmt::Debug for Settings {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Settings")
      .field("url", &self.masked_url())
      .field("command_timeout", &self.command_timeout)
      .finish_non_exhaustive()
  }
}

fn cfg_err(msg: impl Into<String>) -> GuardError {
  GuardError::config(msg)
}

pub use super::options::{parse_options, RedisClientOptions};

/// Check `%XX` sequences before decoding: a stray `%` is an error, not a silent literal.
fn decode_component(raw: &str, what: &str) -> Result<String> {
  let b = raw.as_bytes();
  let mut i = 0;
  while i < b.len() {
    if b[i] == b'%' {
      let ok = i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
      if !ok {
        return Err(cfg_err(format!(
          "malformed percent-encoding in the URL's {what}"
        )));
      }
      i += 3;
    } else {
      i += 1;
    }
  }
  percent_decode_str(raw)
    .decode_utf8()
    .map(|s| s.into_owned())
    .map_err(|_| cfg_err(format!("the URL's {what} is not valid UTF-8 once decoded")))
}

fn parse_host_port(s: &str, default_port: u16, what: &str) -> Result<(String, u16)> {
  let s = s.trim();
  if s.is_empty() {
    return Err(cfg_err(format!("empty host in {what}")));
  }
  let (host, port) = if let Some(rest) = s.strip_prefix('[') {
    // [ipv6]:port
    let end = rest
      .find(']')
      .ok_or_else(|| cfg_err(format!("bad IPv6 address in {what}")))?;
    let host = &rest[..end];
    let after = &rest[end + 1..];
    let port = match after.strip_prefix(':') {
      Some(p) => Some(p),
      None if after.is_empty() => None,
      None => return Err(cfg_err(format!("bad `host:port` in {what}"))),
    };
    (host.to_string(), port)
  } else {
    match s.rsplit_once(':') {
      Some((h, p)) => (h.to_string(), Some(p)),
      None => (s.to_string(), None),
    }
  };
  if host.is_empty() {
    return Err(cfg_err(format!("empty host in {what}")));
  }
  if host
    .chars()
    .any(|c| c.is_whitespace() || c.is_control() || "/?#@[]{}\\\"'<>%".contains(c))
  {
    return Err(cfg_err(format!(
      "the host in {what} has characters a host name cannot have"
    )));
  }
  let port = match port {
    None => default_port,
    Some(p) => check_port(p, what)?,
  };
  Ok((host, port))
}

fn check_port(p: &str, what: &str) -> Result<u16> {
  match p.trim().parse::<u32>() {
    Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
    Ok(_) => Err(cfg_err(format!("port in {what} must be from 1 to 65535"))),
    Err(_) => Err(cfg_err(format!("port in {what} is not a number"))),
  }
}

/// What a URL says.
#[derive(Default)]
struct UrlParts {
  topology: Option<Topology>,
  tls: bool,
  username: Option<String>,
  password: Option<String>,
  db: Option<u8>,
}

fn parse_url(raw: &str, what: &str) -> Result<UrlParts> {
  let raw = raw.trim();
  let (scheme, rest) = raw
    .split_once("://")
    .ok_or_else(|| cfg_err(format!("{what} is not a URL (expected redis://host:port)")))?;
  let scheme = scheme.to_ascii_lowercase();
  let (tls, kind) = match scheme.as_str() {
    "redis" | "valkey" => (false, "standalone"),
    "rediss" | "valkeys" => (true, "standalone"),
    "redis-cluster" | "valkey-cluster" => (false, "cluster"),
    "rediss-cluster" | "valkeys-cluster" => (true, "cluster"),
    "redis-sentinel" | "valkey-sentinel" => (false, "sentinel"),
    "rediss-sentinel" | "valkeys-sentinel" => (true, "sentinel"),
    _ => {
      return Err(cfg_err(format!(
        "unsupported URL scheme `{}` in {what} (use redis, rediss, redis-cluster, rediss-cluster, redis-sentinel or rediss-sentinel)",
        crate::error::truncate(&scheme, 32)
      )))
    }
  };
  // split off the query, then the path, then credentials.
  let (before_query, query) = match rest.split_once('?') {
    Some((a, q)) => (a, Some(q)),
    None => (rest, None),
  };
  let (authority, path) = match before_query.split_once('/') {
    Some((a, p)) => (a, Some(p)),
    None => (before_query, None),
  };
  let (userinfo, hostport) = match authority.rsplit_once('@') {
    Some((u, h)) => (Some(u), h),
    None => (None, authority),
  };
  let mut parts = UrlParts {
    tls,
    ..Default::default()
  };
  if let Some(u) = userinfo {
    let (user, pass) = match u.split_once(':') {
      Some((a, b)) => (a, Some(b)),
      None => (u, None),
    };
    let user = decode_component(user, "user name")?;
    if !user.is_empty() {
      parts.username = Some(user);
    }
    if let Some(p) = pass {
      let p = decode_component(p, "password")?;
      if !p.is_empty() {
        parts.password = Some(p);
      }
    } else if parts.username.is_some() && kind != "sentinel" {
      // `redis://secret@host`: Redis URLs have always treated a lone user-info as the password.
      parts.password = parts.username.take();
    }
  }
  let default_port = if kind == "sentinel" { 26379 } else { 6379 };
  let first = parse_host_port(hostport, default_port, what)?;
  if let Some(p) = path {
    let p = p.trim_end_matches('/');
    if !p.is_empty() {
      if kind == "cluster" {
        return Err(cfg_err(format!("{what}: a cluster has no database number")));
      }
      parts.db = Some(parse_db(p, what)?);
    }
  }
  let mut nodes = vec![first.clone()];
  let mut service: Option<String> = None;
  let mut s_user = None;
  let mut s_pass = None;
  if let Some(q) = query {
    for pair in q.split('&').filter(|s| !s.is_empty()) {
      let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
      let v = decode_component(v, "query")?;
      match k {
        "node" if kind != "standalone" => nodes.push(parse_host_port(&v, default_port, what)?),
        "sentinelServiceName" | "service_name" | "name" if kind == "sentinel" => service = Some(v),
        "sentinelUsername" if kind == "sentinel" => s_user = Some(v),
        "sentinelPassword" if kind == "sentinel" => s_pass = Some(v),
        _ => {
          return Err(cfg_err(format!(
            "unknown URL parameter `{}` in {what}",
            crate::error::truncate(k, 40)
          )))
        }
      }
    }
  }
  parts.topology = Some(match kind {
    "standalone" => Topology::Standalone {
      host: first.0,
      port: first.1,
    },
    "cluster" => Topology::Cluster { nodes },
    _ => Topology::Sentinel {
      nodes,
      name: service.ok_or_else(|| {
        cfg_err(format!(
          "{what}: a sentinel URL needs `?sentinelServiceName=NAME`"
        ))
      })?,
      username: s_user,
      password: s_pass,
    },
  });
  Ok(parts)
}

fn parse_db(s: &str, what: &str) -> Result<u8> {
  match s.trim().parse::<i64>() {
    Ok(n) if (0..=255).contains(&n) => Ok(n as u8),
    Ok(_) => Err(cfg_err(format!("database in {what} must be from 0 to 255"))),
    Err(_) => Err(cfg_err(format!("database in {what} is not a number"))),
  }
}

fn read_pem(v: &str, what: &str) -> Result<String> {
  if v.contains("-----BEGIN") {
    return Ok(v.to_string());
  }
  // `tls.key` may be key material without its PEM armour (a common copy-paste from an env
  // variable): never echo it. A CA or certificate is public: echo the (truncated) path.
  let shown = if what == "key" {
    "(value not shown)".to_string()
  } else {
    format!("`{}`", crate::error::truncate(v, 200))
  };
  match std::fs::read_to_string(v) {
    Ok(s) if s.contains("-----BEGIN") => Ok(s),
    Ok(_) => Err(cfg_err(format!(
      "tls.{what}: the file {shown} holds no PEM data"
    ))),
    Err(e) => Err(cfg_err(format!(
      "tls.{what}: not PEM text, and not a readable file {shown}: {}",
      e.kind()
    ))),
  }
}

fn env_flag(v: &str) -> Option<bool> {
  match v.trim().to_ascii_lowercase().as_str() {
    "1" | "true" | "yes" | "on" => Some(true),
    "0" | "false" | "no" | "off" | "" => Some(false),
    _ => None,
  }
}

/// Resolve options and environment into settings. `env` holds the process environment's
/// relevant variables (empty values count as unset).
pub fn resolve(opts: &RedisClientOptions, env: &HashMap<String, String>) -> Result<Settings> {
  let get = |k: &str| env.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
  let mut warnings = Vec::new();
  let mut s = Settings {
    topology: Topology::Standalone {
      host: "127.0.0.1".into(),
      port: 6379,
    },
    username: None,
    password: None,
    db: None,
    tls: None,
    command_timeout: Duration::from_millis(opts.command_timeout_ms.unwrap_or(250) as u64),
    connect_timeout: Duration::from_millis(opts.connect_timeout_ms.unwrap_or(2000) as u64),
    max_command_buffer: opts.max_command_buffer.unwrap_or(4096) as usize,
    reconnect_min_ms: 50,
    reconnect_max_ms: 2000,
    reconnect_jitter_ms: 100,
    lock_prefix: opts.lock_prefix.clone().unwrap_or_else(|| "lock:".into()),
    fallback_max_keys: opts.fallback_max_keys.unwrap_or(100_000) as usize,
    probe_interval: Duration::from_millis(opts.probe_interval_ms.unwrap_or(250) as u64),
    warnings: Vec::new(),
  };
  if let Some(r) = &opts.reconnect {
    s.reconnect_min_ms = r.min_delay_ms.unwrap_or(s.reconnect_min_ms);
    s.reconnect_max_ms = r.max_delay_ms.unwrap_or(s.reconnect_max_ms);
    s.reconnect_jitter_ms = r.jitter_ms.unwrap_or(s.reconnect_jitter_ms);
    if s.reconnect_min_ms > s.reconnect_max_ms {
      return Err(cfg_err(
        "option `reconnect.minDelayMs` must not exceed `reconnect.maxDelayMs`",
      ));
    }
  }
  let mut tls_on = false;

  // 1. Location: explicit options first.
  let explicit_location = opts.url.is_some()
    || opts.host.is_some()
    || opts.cluster_nodes.is_some()
    || opts.sentinel.is_some();
  if explicit_location {
    if let Some(u) = &opts.url {
      let p = parse_url(u, "option `url`")?;
      apply_url(&mut s, p, &mut tls_on);
    }
  } else {
    // 2. REDIS_URL, unless it is an unexpanded template or a bare scheme.
    let mut used_url = false;
    if let Some(u) = get("REDIS_URL") {
      let bare = u
        .split_once("://")
        .map(|(_, rest)| rest.trim_matches('/').is_empty())
        .unwrap_or(false);
      if u.contains("${") || u.contains("{{") {
        warnings.push("REDIS_URL looks like an unexpanded template (`${{...}}`): ignored".into());
      } else if bare {
        warnings.push("REDIS_URL has no host (a bare `redis://`): ignored".into());
      } else {
        let p = parse_url(u, "REDIS_URL")?;
        apply_url(&mut s, p, &mut tls_on);
        used_url = true;
      }
    }
    // 3. REDIS_HOST / REDIS_PORT / ... and Railway's names.
    if !used_url {
      let host = get("REDIS_HOST").or_else(|| get("REDISHOST"));
      let port = get("REDIS_PORT").or_else(|| get("REDISPORT"));
      if host.is_some() || port.is_some() {
        s.topology = Topology::Standalone {
          host: host.unwrap_or("127.0.0.1").to_string(),
          port: match port {
            Some(p) => check_port(p, "REDIS_PORT")?,
            None => 6379,
          },
        };
      }
      // The ACL user: `REDIS_USERNAME`, else `REDIS_USER` (the name many backends use), else
      // Railway's `REDISUSER`.
      if let Some(u) = get("REDIS_USERNAME")
        .or_else(|| get("REDIS_USER"))
        .or_else(|| get("REDISUSER"))
      {
        s.username = Some(u.to_string());
      }
      if let Some(p) = env
        .get("REDIS_PASSWORD")
        .or_else(|| env.get("REDISPASSWORD"))
        .filter(|p| !p.is_empty())
      {
        s.password = Some(p.clone());
      }
      if let Some(d) = get("REDIS_DB") {
        s.db = Some(parse_db(d, "REDIS_DB")?);
      }
      if let Some(t) = get("REDIS_TLS") {
        tls_on = env_flag(t).ok_or_else(|| cfg_err("REDIS_TLS must be true or false"))?;
      }
    }
  }

  // 4. Explicit fields override what the URL or the environment said.
  if let Some(h) = &opts.host {
    if h.trim().is_empty() {
      return Err(cfg_err("option `host` is empty"));
    }
    parse_host_port(
      &format!(
        "[{}]",
        h.trim().trim_start_matches('[').trim_end_matches(']')
      ),
      6379,
      "option `host`",
    )?;
    let port = opts.port.map(|p| p as u16).unwrap_or(match &s.topology {
      Topology::Standalone { port, .. } => *port,
      _ => 6379,
    });
    s.topology = Topology::Standalone {
      host: h.trim().to_string(),
      port,
    };
  } else if let Some(p) = opts.port {
    match &mut s.topology {
      Topology::Standalone { port, .. } => *port = p as u16,
      _ => return Err(cfg_err("option `port` applies to a standalone server only")),
    }
  }
  if let Some(nodes) = &opts.cluster_nodes {
    if nodes.is_empty() {
      return Err(cfg_err("option `clusterNodes` is empty"));
    }
    let nodes = nodes
      .iter()
      .map(|n| parse_host_port(n, 6379, "option `clusterNodes`"))
      .collect::<Result<Vec<_>>>()?;
    s.topology = Topology::Cluster { nodes };
  }
  if let Some(sen) = &opts.sentinel {
    let nodes = sen
      .nodes
      .as_ref()
      .filter(|n| !n.is_empty())
      .ok_or_else(|| cfg_err("option `sentinel.nodes` is required"))?
      .iter()
      .map(|n| parse_host_port(n, 26379, "option `sentinel.nodes`"))
      .collect::<Result<Vec<_>>>()?;
    let name = sen
      .name
      .clone()
      .filter(|n| !n.is_empty())
      .ok_or_else(|| cfg_err("option `sentinel.name` is required"))?;
    s.topology = Topology::Sentinel {
      nodes,
      name,
      username: sen.username.clone(),
      password: sen.password.clone(),
    };
  }
  if let Some(u) = &opts.username {
    s.username = Some(u.clone()).filter(|u| !u.is_empty());
  }
  if let Some(p) = &opts.password {
    s.password = Some(p.clone()).filter(|p| !p.is_empty());
  }
  if let Some(d) = opts.db {
    s.db = Some(d as u8);
  }
  if matches!(s.topology, Topology::Cluster { .. }) && s.db.unwrap_or(0) != 0 {
    return Err(cfg_err("a cluster has no database number: remove `db`"));
  }
  if s.username.is_some() && s.password.is_none() {
    return Err(cfg_err("a user name needs a password"));
  }

  // 5. TLS.
  let tls_opts = opts.tls.clone();
  if tls_opts.is_some() {
    tls_on = true;
  }
  if tls_on {
    let t = tls_opts.unwrap_or_default();
    if t.cert.is_some() != t.key.is_some() {
      return Err(cfg_err("tls.cert and tls.key go together"));
    }
    s.tls = Some(TlsSettings {
      ca: t.ca.as_deref().map(|v| read_pem(v, "ca")).transpose()?,
      cert: t.cert.as_deref().map(|v| read_pem(v, "cert")).transpose()?,
      key: t.key.as_deref().map(|v| read_pem(v, "key")).transpose()?,
      servername: t.servername.clone(),
      insecure: t.insecure.unwrap_or(false),
    });
  }
  s.warnings = warnings;
  Ok(s)
}

fn apply_url(s: &mut Settings, p: UrlParts, tls_on: &mut bool) {
  if let Some(t) = p.topology {
    s.topology = t;
  }
  *tls_on = *tls_on || p.tls;
  s.username = p.username;
  s.password = p.password;
  s.db = p.db;
}

impl Settings {
  /// `redis://user:***@host:port/db`: the URL with the password masked.
  pub fn masked_url(&self) -> String {
    let tls = self.tls.is_some();
    let auth = match (&self.username, &self.password) {
      (Some(u), Some(_)) => format!("{u}:***@"),
      (None, Some(_)) => ":***@".to_string(),
      _ => String::new(),
    };
    let db = self
      .db
      .filter(|d| *d != 0)
      .map(|d| format!("/{d}"))
      .unwrap_or_default();
    let hp = |(h, p): &(String, u16)| {
      if h.contains(':') {
        format!("[{h}]:{p}")
      } else {
        format!("{h}:{p}")
      }
    };
    match &self.topology {
      Topology::Standalone { host, port } => format!(
        "{}://{auth}{}{db}",
        if tls { "rediss" } else { "redis" },
        hp(&(host.clone(), *port))
      ),
      Topology::Cluster { nodes } => {
        let rest: Vec<String> = nodes
          .iter()
          .skip(1)
          .map(|n| format!("node={}", hp(n)))
          .collect();
        format!(
          "{}://{auth}{}{}",
          if tls {
            "rediss-cluster"
          } else {
            "redis-cluster"
          },
          hp(&nodes[0]),
          if rest.is_empty() {
            String::new()
          } else {
            format!("?{}", rest.join("&"))
          }
        )
      }
      Topology::Sentinel { nodes, name, .. } => {
        let rest: Vec<String> = nodes
          .iter()
          .skip(1)
          .map(|n| format!("&node={}", hp(n)))
          .collect();
        format!(
          "{}://{auth}{}{db}?sentinelServiceName={name}{}",
          if tls {
            "rediss-sentinel"
          } else {
            "redis-sentinel"
          },
          hp(&nodes[0]),
          rest.join("")
        )
      }
    }
  }

  /// `redis` / `cluster` / `sentinel`.
  pub fn mode_name(&self) -> &'static str {
    match self.topology {
      Topology::Standalone { .. } => "standalone",
      Topology::Cluster { .. } => "cluster",
      Topology::Sentinel { .. } => "sentinel",
    }
  }

  /// Replace every secret this configuration holds in `text` with `***`.
  pub fn mask(&self, text: &str) -> String {
    let mut out = text.to_string();
    let mut secrets: Vec<&str> = Vec::new();
    if let Some(p) = &self.password {
      secrets.push(p);
    }
    if let Topology::Sentinel {
      password: Some(p), ..
    } = &self.topology
    {
      secrets.push(p);
    }
    if let Some(k) = self.tls.as_ref().and_then(|t| t.key.as_deref()) {
      secrets.push(k);
    }
    for sec in secrets {
      if sec.len() >= 2 {
        out = out.replace(sec, "***");
        let enc = percent_encoding::utf8_percent_encode(sec, percent_encoding::NON_ALPHANUMERIC)
          .to_string();
        if enc != sec {
          out = out.replace(&enc, "***");
        }
      }
    }
    out
  }
}

/// Parse options JSON and the environment in one step (used by the constructor).
pub fn from_js(options_json: Option<&str>, env_json: Option<&str>) -> Result<Settings> {
  let v: Value = match options_json {
    None => Value::Null,
    Some(j) => serde_json::from_str(j).map_err(|_| cfg_err("options are not a plain object"))?,
  };
  let opts = parse_options(&v)?;
  let env: HashMap<String, String> = match env_json {
    None => HashMap::new(),
    Some(j) => {
      serde_json::from_str(j).map_err(|_| cfg_err("environment is not an object of strings"))?
    }
  };
  resolve(&opts, &env)
}

#[cfg(test)]
mod tests {
  use super::*;

  fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
      .iter()
      .map(|(k, v)| (k.to_string(), v.to_string()))
      .collect()
  }

  #[test]
  fn precedence() {
    let s = resolve(&RedisClientOptions::default(), &env(&[])).unwrap();
    assert_eq!(s.masked_url(), "redis://127.0.0.1:6379");
    let e = env(&[("REDIS_URL", "redis://u:p%40ss@h:7/2"), ("REDIS_HOST", "x")]);
    let s = resolve(&RedisClientOptions::default(), &e).unwrap();
    assert_eq!(s.password.as_deref(), Some("p@ss"));
    assert_eq!(s.masked_url(), "redis://u:***@h:7/2");
    let o = RedisClientOptions {
      host: Some("o".into()),
      ..Default::default()
    };
    assert_eq!(resolve(&o, &e).unwrap().masked_url(), "redis://o:6379");
    let e = env(&[
      ("REDIS_URL", "${{Redis.REDIS_URL}}"),
      ("REDISHOST", "rail"),
      ("REDISPORT", "99"),
    ]);
    let s = resolve(&RedisClientOptions::default(), &e).unwrap();
    assert_eq!(s.masked_url(), "redis://rail:99");
    assert_eq!(s.warnings.len(), 1);
  }

  #[test]
  fn bad_inputs_never_echo_the_password() {
    for u in [
      "redis://:sekret@h:0",
      "redis://:sekret@h:70000",
      "redis://:sekret@h:abc",
      "redis://:sekret@h/-1",
      "redis://:sek%zzret@h",
      "ftp://:sekret@h",
      "redis://:sekret@:5",
      "redis://:sekret@exa mple:5",
    ] {
      let e = match resolve(
        &RedisClientOptions {
          url: Some(u.into()),
          ..Default::default()
        },
        &env(&[]),
      ) {
        Err(e) => e,
        Ok(_) => panic!("accepted {u}"),
      };
      assert!(!e.message.contains("sekret"), "{}", e.message);
    }
  }
}
