//! The one table of client options. Each option is written once, below: its type, its `///`
//! doc (which napi-rs turns into `binding.d.ts`, and index.d.ts re-exports), and its parser. The
//! struct, the list of known keys (napi-rs's camelCase of the field names) and the validating
//! parser all come from that table (`option_table!`). Messages name an option and the type of a
//! bad value, never the value (it may be a secret).

use napi_derive::napi;
use serde_json::{Map, Value};

use crate::error::{GuardError, Result};

fn cfg_err(msg: impl Into<String>) -> GuardError {
  GuardError::config(msg)
}

/// napi-rs's JS name of a Rust field: `command_timeout_ms` is `commandTimeoutMs`.
fn camel(field: &str) -> String {
  let mut out = String::with_capacity(field.len());
  let mut up = false;
  for c in field.chars() {
    if c == '_' {
      up = true;
    } else if up {
      out.extend(c.to_uppercase());
      up = false;
    } else {
      out.push(c);
    }
  }
  out
}

/// `option_table!(Name { field => parser, ... })` for a `#[napi(object)]` struct of options
/// written out just above it (with its `///` docs, which napi-rs reads into binding.d.ts): its
/// `keys()` (napi-rs's camelCase of the field names) and its validating `parse(object, path)`. A
/// parser is called as `parser(object, key, path)`. The struct literal in `parse` names every
/// field, so the compiler refuses a table that misses or invents one.
macro_rules! option_table {
  ($name:ident { $( $field:ident => $parse:expr, )* }) => {
    impl $name {
      /// The option names as JavaScript spells them.
      pub fn keys() -> Vec<String> {
        vec![$(camel(stringify!($field))),*]
      }

      /// Validate `o` (at `path`, e.g. `tls.`, for messages): unknown keys and bad values are
      /// `Code::Config` errors.
      pub fn parse(o: &Map<String, Value>, path: &str) -> Result<Self> {
        let keys = Self::keys();
        check_keys(o, &keys, path)?;
        let mut names = keys.iter();
        Ok($name {
          $( $field: {
            let key = names.next().map(String::as_str).unwrap_or_default();
            ($parse)(o, key, path)?
          }, )*
        })
      }
    }
  };
}

/// Name of a JSON value's type, for messages (never the value itself: it may be a secret).
pub fn type_name(v: &Value) -> &'static str {
  match v {
    Value::Null => "null",
    Value::Bool(_) => "a boolean",
    Value::Number(_) => "a number",
    Value::String(s) if s.starts_with("[Function") => "a function",
    Value::String(s) if s == "[Symbol]" => "a symbol",
    Value::String(s) if s == "[NaN]" => "a non-finite number",
    Value::String(_) => "a string",
    Value::Array(_) => "an array",
    Value::Object(_) => "an object",
  }
}

/// `lib/client.js` sends a function, a symbol or a non-finite number as a marker string
/// (`[Function]`, `[Symbol]`, `[NaN]`): they are wrong types, never values.
fn is_js_marker(s: &str) -> bool {
  s == "[Function]" || s == "[Symbol]" || s == "[NaN]"
}

fn opt_str(o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>> {
  match o.get(key) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::String(s)) if !is_js_marker(s) => Ok(Some(s.clone())),
    Some(v) => Err(cfg_err(format!(
      "option `{path}{key}` must be a string, got {}",
      type_name(v)
    ))),
  }
}

fn opt_bool(o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>> {
  match o.get(key) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::Bool(b)) => Ok(Some(*b)),
    Some(v) => Err(cfg_err(format!(
      "option `{path}{key}` must be a boolean, got {}",
      type_name(v)
    ))),
  }
}

/// An integer option within `[min, max]`. Strings holding integers are accepted (env-style).
fn opt_int(
  o: &Map<String, Value>,
  key: &str,
  path: &str,
  min: i64,
  max: i64,
) -> Result<Option<i64>> {
  let v = match o.get(key) {
    None | Some(Value::Null) => return Ok(None),
    Some(v) => v,
  };
  let n = match v {
    Value::Number(n) => n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64),
    Value::String(s) => s.trim().parse::<i64>().ok(),
    _ => None,
  };
  match n {
    Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
    Some(_) => Err(cfg_err(format!(
      "option `{path}{key}` must be an integer from {min} to {max}"
    ))),
    None => Err(cfg_err(format!(
      "option `{path}{key}` must be an integer, got {}",
      type_name(v)
    ))),
  }
}

fn opt_str_list(o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Vec<String>>> {
  match o.get(key) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::Array(a)) => a
      .iter()
      .map(|v| match v {
        Value::String(s) if !is_js_marker(s) => Ok(s.clone()),
        v => Err(cfg_err(format!(
          "option `{path}{key}` must hold `host:port` strings, got {}",
          type_name(v)
        ))),
      })
      .collect::<Result<Vec<_>>>()
      .map(Some),
    Some(v) => Err(cfg_err(format!(
      "option `{path}{key}` must be an array of `host:port` strings, got {}",
      type_name(v)
    ))),
  }
}

fn check_keys(o: &Map<String, Value>, allowed: &[String], path: &str) -> Result<()> {
  for k in o.keys() {
    if !allowed.iter().any(|a| a == k) {
      return Err(cfg_err(format!(
        "unknown option `{path}{}` (known: {})",
        crate::error::truncate(k, 64),
        allowed.join(", ")
      )));
    }
  }
  Ok(())
}

type Parser<T> = fn(&Map<String, Value>, &str, &str) -> Result<Option<T>>;

/// An integer option from `min` to `max`.
fn int(min: i64, max: i64) -> impl Fn(&Map<String, Value>, &str, &str) -> Result<Option<u32>> {
  move |o, key, path| Ok(opt_int(o, key, path, min, max)?.map(|n| n as u32))
}

/// A nested object of options (`parse`: its table's parser).
fn object<T>(
  parse: fn(&Map<String, Value>, &str) -> Result<T>,
) -> impl Fn(&Map<String, Value>, &str, &str) -> Result<Option<T>> {
  move |o, key, path| match o.get(key) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::Object(m)) => parse(m, &format!("{path}{key}.")).map(Some),
    Some(v) => Err(cfg_err(format!(
      "option `{path}{key}` must be an object, got {}",
      type_name(v)
    ))),
  }
}

/// `tls`: `true` (the system's roots), `false`, or TLS options.
fn tls(o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<TlsOptions>> {
  match o.get(key) {
    None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
    Some(Value::Bool(true)) => Ok(Some(TlsOptions::default())),
    Some(Value::Object(t)) => TlsOptions::parse(t, &format!("{path}{key}.")).map(Some),
    Some(v) => Err(cfg_err(format!(
      "option `{path}{key}` must be a boolean or an object, got {}",
      type_name(v)
    ))),
  }
}

const STR: Parser<String> = opt_str;
const BOOL: Parser<bool> = opt_bool;
const NODES: Parser<Vec<String>> = opt_str_list;

/// Options of `new RedisClient(options)`. Every field is optional; see the README for the order
/// in which options, `REDIS_URL` and `REDIS_HOST`/... are applied.
#[napi(object)]
#[derive(Default, Clone)]
pub struct RedisClientOptions {
  /// A connection URL: `redis://[[user]:password@]host[:port][/db]`, `rediss://` (TLS),
  /// `redis-cluster://host:port?node=host2:port2`, or
  /// `redis-sentinel://host:port[/db]?sentinelServiceName=name&node=host2:port2`.
  /// The default value is `REDIS_URL`, then `REDIS_HOST`/`REDIS_PORT`/..., then `redis://127.0.0.1:6379`.
  pub url: Option<String>,
  /// Host name or IP of a standalone server. Overrides the URL's host. The default value is `127.0.0.1`.
  pub host: Option<String>,
  /// TCP port, 1 to 65535. The default value is `6379`.
  pub port: Option<u32>,
  /// ACL user name. The default value is none (the `default` user).
  pub username: Option<String>,
  /// Password (with `username`: the ACL user's password). The default value is none.
  pub password: Option<String>,
  /// Database number, 0 to 255 (standalone and sentinel only). The default value is `0`.
  pub db: Option<u32>,
  /// `true` for TLS with the system's roots, or TLS options. The default value is `false`
  /// (`true` for `rediss://` URLs and `REDIS_TLS=true`).
  pub tls: Option<TlsOptions>,
  /// Cluster seed nodes as `host:port` strings; turns on cluster mode. The default value is none.
  pub cluster_nodes: Option<Vec<String>>,
  /// Sentinel nodes (`host:port`) and the name of the monitored primary. The default value is none.
  pub sentinel: Option<SentinelOptions>,
  /// Deadline of every command, in ms: a call that takes longer settles with the fallback.
  /// The default value is `250`.
  pub command_timeout_ms: Option<u32>,
  /// Deadline of a connection attempt (TCP + TLS + AUTH/HELLO), in ms. The default value is `2000`.
  pub connect_timeout_ms: Option<u32>,
  /// Most commands that may wait in the client's queue; more fail at once. The default value is `4096`.
  pub max_command_buffer: Option<u32>,
  /// Reconnection: forever, exponential backoff from `minDelayMs` to `maxDelayMs` with up to
  /// `jitterMs` of random jitter. The default value is `{ minDelayMs: 50, maxDelayMs: 2000, jitterMs: 100 }`.
  pub reconnect: Option<ReconnectOptions>,
  /// Prefix of the Redis keys of locks. The default value is `lock:`.
  pub lock_prefix: Option<String>,
  /// Most keys the in-memory fallback keeps (rate-limit windows and locks, each). The default value is `100000`.
  pub fallback_max_keys: Option<u32>,
  /// How often, in ms, a client that lost Redis probes it with PING. The default value is `250`.
  pub probe_interval_ms: Option<u32>,
}

option_table!(RedisClientOptions {
  url => STR,
  host => STR,
  port => int(1, 65535),
  username => STR,
  password => STR,
  db => int(0, 255),
  tls => tls,
  cluster_nodes => NODES,
  sentinel => object(SentinelOptions::parse),
  command_timeout_ms => int(1, 600_000),
  connect_timeout_ms => int(1, 600_000),
  max_command_buffer => int(1, 10_000_000),
  reconnect => object(ReconnectOptions::parse),
  lock_prefix => STR,
  fallback_max_keys => int(1, 100_000_000),
  probe_interval_ms => int(10, 600_000),
});

/// TLS options.
#[napi(object)]
#[derive(Default, Clone)]
pub struct TlsOptions {
  /// CA certificate(s), PEM text or a file path. The default value is the system's roots.
  pub ca: Option<String>,
  /// Client certificate chain, PEM text or a file path. The default value is none.
  pub cert: Option<String>,
  /// Client private key, PEM text or a file path. The default value is none.
  pub key: Option<String>,
  /// Server name to verify (SNI). The default value is the host name.
  pub servername: Option<String>,
  /// `true` turns certificate verification OFF: for tests only. The default value is `false`.
  pub insecure: Option<bool>,
}

option_table!(TlsOptions {
  ca => STR,
  cert => STR,
  key => STR,
  servername => STR,
  insecure => BOOL,
});

/// Sentinel options.
#[napi(object)]
#[derive(Default, Clone)]
pub struct SentinelOptions {
  /// Name of the monitored primary (`sentinel monitor NAME ...`). Required.
  pub name: Option<String>,
  /// Sentinel nodes as `host:port` strings. Required.
  pub nodes: Option<Vec<String>>,
  /// ACL user name for the sentinels. The default value is none.
  pub username: Option<String>,
  /// Password for the sentinels. The default value is none.
  pub password: Option<String>,
}

option_table!(SentinelOptions {
  name => STR,
  nodes => NODES,
  username => STR,
  password => STR,
});

/// Reconnection backoff.
#[napi(object)]
#[derive(Default, Clone)]
pub struct ReconnectOptions {
  /// First delay, in ms. The default value is `50`.
  pub min_delay_ms: Option<u32>,
  /// Largest delay, in ms. The default value is `2000`.
  pub max_delay_ms: Option<u32>,
  /// Random jitter added to each delay, up to this many ms. The default value is `100`.
  pub jitter_ms: Option<u32>,
}

option_table!(ReconnectOptions {
  min_delay_ms => int(1, 3_600_000),
  max_delay_ms => int(1, 3_600_000),
  jitter_ms => int(0, 60_000),
});

/// The options of `new RedisClient()` as JSON (`null`: none).
pub fn parse_options(v: &Value) -> Result<RedisClientOptions> {
  match v {
    Value::Null => Ok(RedisClientOptions::default()),
    Value::Object(o) => RedisClientOptions::parse(o, ""),
    v => Err(cfg_err(format!(
      "options must be an object, got {}",
      type_name(v)
    ))),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn keys_are_napi_names() {
    assert_eq!(camel("command_timeout_ms"), "commandTimeoutMs");
    let k = RedisClientOptions::keys();
    assert!(k.contains(&"clusterNodes".to_string()) && k.contains(&"url".to_string()));
    assert_eq!(
      ReconnectOptions::keys(),
      ["minDelayMs", "maxDelayMs", "jitterMs"]
    );
  }

  #[test]
  fn parses_and_refuses() {
    let v: Value = serde_json::json!({ "port": "6380", "tls": { "insecure": true }, "reconnect": { "jitterMs": 0 } });
    let o = parse_options(&v).unwrap();
    assert_eq!(o.port, Some(6380));
    assert_eq!(o.tls.unwrap().insecure, Some(true));
    assert_eq!(o.reconnect.unwrap().jitter_ms, Some(0));
    let e = parse_options(&serde_json::json!({ "tls": { "bogus": 1 } }))
      .err()
      .expect("an error");
    assert!(
      e.message.contains("unknown option `tls.bogus`"),
      "{}",
      e.message
    );
    let e = parse_options(&serde_json::json!({ "password": 5 }))
      .err()
      .expect("an error");
    assert!(
      e.message
        .contains("`password` must be a string, got a number"),
      "{}",
      e.message
    );
    let e = parse_options(&serde_json::json!({ "sentinel": "x" }))
      .err()
      .expect("an error");
    assert!(
      e.message.contains("option `sentinel` must be an object"),
      "{}",
      e.message
    );
  }
}
