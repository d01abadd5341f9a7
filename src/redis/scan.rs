//! Deleting every key that matches a pattern: `SCAN` + `UNLINK` on every primary (cluster:
//! each node), never `KEYS`, each page under the command deadline. Shared by the store's
//! `resetAll`, the cache's `clear` and `deletePattern`, and everything else that clears a prefix.

use fred::prelude::*;
use fred::types::scan::Scanner;
use futures::StreamExt;

use crate::connection::client::ClientInner;
use crate::error::GuardError;
use crate::redis::scripts;

/// `UNLINK key` in a cluster: sent again while it is redirected (a slot moving during
/// `resetAll`), for at most the command deadline. Resolves the number of keys deleted (0 on error).
async fn unlink_one(client: &ClientInner, key: fred::types::Key) -> f64 {
  let start = std::time::Instant::now();
  let mut delay = std::time::Duration::from_millis(1);
  loop {
    match client.redis.unlink::<i64, _>(key.clone()).await {
      Ok(n) => return n as f64,
      Err(e) if scripts::is_redirect(&e) && start.elapsed() < client.settings.command_timeout => {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_millis(32));
      }
      Err(_) => return 0.0,
    }
  }
}

/// Escape glob characters for `SCAN MATCH`.
pub fn glob_escape(s: &str) -> String {
  let mut out = String::with_capacity(s.len() + 2);
  for c in s.chars() {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
      out.push('\\');
    }
    out.push(c);
  }
  out
}

/// Delete every key under `prefix` (glob characters in it are escaped). Resolves the number
/// of keys deleted.
pub async fn delete_prefix(
  client: &std::sync::Arc<ClientInner>,
  prefix: &str,
) -> Result<f64, GuardError> {
  delete_matching(client, format!("{}*", glob_escape(prefix))).await
}

/// Delete every key that matches the `SCAN MATCH` glob `pattern`. Resolves the number of keys
/// deleted.
pub async fn delete_matching(
  client: &std::sync::Arc<ClientInner>,
  pattern: String,
) -> Result<f64, GuardError> {
  let me = client;
  let cluster = me.is_cluster();
  let mut stream = if cluster {
    me.redis.scan_cluster(pattern, Some(1000), None).boxed()
  } else {
    me.redis.scan(pattern, Some(1000), None).boxed()
  };
  let mut deleted = 0f64;
  loop {
    let page = match tokio::time::timeout(me.settings.command_timeout * 4, stream.next()).await {
      Err(_) => return Err(me.on_timeout()),
      Ok(None) => break,
      Ok(Some(Err(e))) => return Err(me.on_error(&e)),
      Ok(Some(Ok(p))) => p,
    };
    let mut page = page;
    if let Some(keys) = page.take_results() {
      if cluster {
        // One UNLINK per key (keys of a page may be in different slots), each on its own:
        // in fred a redirection fails a whole pipeline. Redirected ones are sent again.
        let r = futures::future::join_all(keys.into_iter().map(|k| unlink_one(me, k)));
        deleted += r.await.into_iter().sum::<f64>();
      } else {
        let pipe = me.redis.pipeline();
        for k in keys {
          let _: std::result::Result<(), _> = pipe.unlink(k).await;
        }
        for r in pipe.try_all::<i64>().await {
          deleted += r.unwrap_or(0) as f64;
        }
      }
    }
    page.next();
  }
  Ok(deleted)
}
