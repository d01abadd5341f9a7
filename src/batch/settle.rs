//! Writes whose outcome Redis must still settle: a feature answered its caller as if they had
//! failed (the deadline fired, the connection broke, the policy answered), yet Redis may apply
//! them — a stalled server applies what it had read when it resumes — or may hold what an
//! earlier call left (a fill lock whose give-back went to the fallback). A feature hands
//! compare-and-delete script calls for those keys to [`later`]; they are sent once Redis
//! answers again, in `passes` passes (the second `SECOND_PASS` after the first succeeded, for
//! a write applied after the first pass), and given up after `give_up_ms`, or when the client
//! closes. `on_reply` sees each successful reply (to count what was removed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::types::Value;

use crate::connection::client::ClientInner;
use crate::redis::scripts::{self, Call};

/// The wait between the first and the second pass.
const SECOND_PASS: Duration = Duration::from_millis(1000);

/// Send `calls` once Redis answers, `passes` times; see the module.
pub fn later(
  client: &Arc<ClientInner>,
  calls: Vec<Call>,
  passes: u32,
  give_up_ms: u64,
  on_reply: impl Fn(&Value) + Send + 'static,
) {
  if calls.is_empty() || client.is_closed() {
    return;
  }
  let client = client.clone();
  napi::bindgen_prelude::spawn(async move {
    let give_up = Instant::now() + Duration::from_millis(give_up_ms);
    let mut pending: Vec<usize> = (0..calls.len()).collect();
    let mut done = 0;
    let mut delay = Duration::from_millis(50);
    while Instant::now() < give_up && !client.is_closed() {
      tokio::time::sleep(delay).await;
      if !client.usable().await {
        // No I/O: look again soon, so that what waits on these keys waits little once Redis is back.
        delay = Duration::from_millis(100);
        continue;
      }
      let batch: Vec<Call> = pending.iter().map(|&i| calls[i].clone()).collect();
      let results = match client
        .run(async { Ok(scripts::run_batch(&client.redis, &batch).await) })
        .await
      {
        Ok(r) => r,
        Err(_) => continue,
      };
      let mut failed = Vec::new();
      for (&i, r) in pending.iter().zip(results) {
        match r {
          Ok(v) => on_reply(&v),
          Err(_) => failed.push(i),
        }
      }
      if failed.is_empty() {
        done += 1;
        if done >= passes {
          return;
        }
        pending = (0..calls.len()).collect();
        delay = SECOND_PASS;
      } else {
        pending = failed;
        delay = (delay * 2).min(Duration::from_secs(2));
      }
    }
  });
}
