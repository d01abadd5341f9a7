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

/// The pages of the keys that match a `SCAN MATCH` glob (1000 per page; every primary of a
/// cluster, one after the other), each page under four command deadlines.
pub struct Pages<'c> {
  client: &'c std::sync::Arc<ClientInner>,
  stream:
    futures::stream::BoxStream<'static, Result<fred::types::scan::ScanResult, fred::error::Error>>,
}

impl<'c> Pages<'c> {
  pub fn new(client: &'c std::sync::Arc<ClientInner>, pattern: String) -> Self {
    let stream = if client.is_cluster() {
      client.redis.scan_cluster(pattern, Some(1000), None).boxed()
    } else {
      client.redis.scan(pattern, Some(1000), None).boxed()
    };
    Pages { client, stream }
  }

  /// The next page, or None at the end.
  pub async fn next(&mut self) -> Result<Option<Vec<fred::types::Key>>, GuardError> {
    let me = self.client;
    loop {
      let mut page =
        match tokio::time::timeout(me.settings.command_timeout * 4, self.stream.next()).await {
          Err(_) => return Err(me.on_timeout()),
          Ok(None) => return Ok(None),
          Ok(Some(Err(e))) => return Err(me.on_error(&e)),
          Ok(Some(Ok(p))) => p,
        };
      let keys = page.take_results();
      page.next();
      if let Some(keys) = keys {
        return Ok(Some(keys));
      }
    }
  }
}

/// Delete every key that matches the `SCAN MATCH` glob `pattern`. Resolves the number of keys
/// deleted; `progress` hears the running count after each page.
pub async fn delete_matching(
  client: &std::sync::Arc<ClientInner>,
  pattern: String,
) -> Result<f64, GuardError> {
  delete_matching_with(client, pattern, |_| {}).await
}

/// [`delete_matching`], telling `progress` the number deleted so far after each page.
pub async fn delete_matching_with(
  client: &std::sync::Arc<ClientInner>,
  pattern: String,
  progress: impl Fn(f64),
) -> Result<f64, GuardError> {
  let me = client;
  let cluster = me.is_cluster();
  let mut deleted = 0f64;
  let mut pages = Pages::new(me, pattern);
  while let Some(keys) = pages.next().await? {
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
    progress(deleted);
  }
  Ok(deleted)
}
