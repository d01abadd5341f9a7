//! A pub/sub subscriber on the client's settings (deadline, bounded queue, one attempt per
//! command, reconnect policy, TLS: `client::build_fred`, never fred's defaults). It tells JS
//! three things through one callback: subscribed (`SUB_UP`, after every (re)connection), the
//! channel was interrupted (`SUB_DOWN`: messages may have been lost), and each message
//! (`SUB_MESSAGE`). A PING every second notices a connection that went quiet (a hung server, a
//! black hole) even though a subscriber sends nothing else. It stops when the client closes or
//! `stop` is called.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use napi::bindgen_prelude::FnArgs;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};

use crate::connection::client::{build_fred, ClientInner};
use crate::error::GuardError;

/// Subscriber event: subscribed to the channel (again); messages flow from now on.
pub const SUB_UP: u32 = 0;
/// Subscriber event: the channel was interrupted; messages sent meanwhile are lost.
pub const SUB_DOWN: u32 = 1;
/// Subscriber event: a message (its text).
pub const SUB_MESSAGE: u32 = 2;

/// How often the subscriber checks its connection.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The JS callback: `(event, text)`.
pub type OnEvent =
  ThreadsafeFunction<(u32, String), (), FnArgs<(u32, String)>, napi::Status, false, true>;

/// A running subscriber; dropping it does not stop it, `stop` does.
pub struct Subscriber {
  stopped: Arc<AtomicBool>,
  redis: Client,
}

impl Subscriber {
  /// Subscribe to `channel` on a new connection made with `client`'s settings.
  pub fn start(
    client: &Arc<ClientInner>,
    channel: String,
    on_event: OnEvent,
  ) -> std::result::Result<Subscriber, GuardError> {
    let redis = build_fred(&client.settings)?;
    let stopped = Arc::new(AtomicBool::new(false));
    let me = Subscriber {
      stopped: stopped.clone(),
      redis: redis.clone(),
    };
    let owner = client.clone();
    let emit = move |event: u32, text: String| {
      on_event.call((event, text), ThreadsafeFunctionCallMode::NonBlocking);
    };
    napi::bindgen_prelude::spawn(async move {
      let mut messages = redis.message_rx();
      let mut reconnects = redis.reconnect_rx();
      let mut errors = redis.error_rx();
      let _conn = redis.connect();
      let mut ping = tokio::time::interval(PING_EVERY);
      let mut up = false;
      let deadline = owner.settings.command_timeout;
      // Subscribed, and a PING answered after it: the connection carries bytes both ways and
      // its replies are in step with its commands. (A connection that lost bytes in a black
      // hole answers each PING with the reply of an older one, so it never counts as up; and a
      // new connection into a black hole is open but silent.)
      let subscribe = || async {
        tokio::time::timeout(deadline, redis.subscribe(channel.as_str()))
          .await
          .is_ok_and(|r| r.is_ok())
          && tokio::time::timeout(deadline, redis.ping::<Value>(None))
            .await
            .is_ok_and(|r| r.is_ok())
      };
      // A connection that answers nothing is replaced after `silent_limit`, then after twice
      // that, and so on, as the client's probe does (client.rs): fred's own unresponsive check
      // never fires while these PINGs are written.
      let silent_limit = (deadline * 4).max(Duration::from_millis(1000));
      let mut silent_since: Option<Instant> = None;
      let mut replaced = 0u32;
      loop {
        if stopped.load(Ordering::Acquire) || owner.is_closed() {
          break;
        }
        tokio::select! {
          m = messages.recv() => match m {
            Ok(m) => {
              if let Some(text) = m.value.as_string() {
                emit(SUB_MESSAGE, text);
              }
            }
            // Messages were dropped here: as good as an interruption.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
              up = false;
              emit(SUB_DOWN, String::new());
              if subscribe().await {
                up = true;
                emit(SUB_UP, String::new());
              }
            }
            Err(_) => break,
          },
          r = reconnects.recv() => match r {
            Ok(_) => {
              if up {
                emit(SUB_DOWN, String::new());
              }
              up = subscribe().await;
              if up {
                emit(SUB_UP, String::new());
              }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => break,
          },
          e = errors.recv() => match e {
            Ok(_) => {
              if up {
                up = false;
                emit(SUB_DOWN, String::new());
              }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => break,
          },
          _ = ping.tick() => {
            let connected = redis.is_connected();
            let sent = Instant::now();
            let ok = connected
              && tokio::time::timeout(deadline, redis.ping::<Value>(None)).await.is_ok_and(|r| r.is_ok());
            if ok || !connected {
              silent_since = None;
            } else {
              let since = *silent_since.get_or_insert(sent);
              if since.elapsed() >= silent_limit * (1 << replaced.min(4)) {
                silent_since = None;
                replaced += 1;
                let redis = redis.clone();
                let limit = owner.settings.connect_timeout * 2;
                napi::bindgen_prelude::spawn(async move {
                  let _ = tokio::time::timeout(limit, redis.force_reconnection()).await;
                });
              }
            }
            if ok {
              replaced = 0;
            }
            if up && !ok {
              up = false;
              emit(SUB_DOWN, String::new());
            } else if !up && ok {
              up = subscribe().await;
              if up {
                emit(SUB_UP, String::new());
              }
            }
          }
        }
      }
      let _ = tokio::time::timeout(deadline, redis.quit()).await;
    });
    Ok(me)
  }

  /// Stop: unsubscribe and close the connection.
  pub fn stop(&self) {
    self.stopped.store(true, Ordering::Release);
    let redis = self.redis.clone();
    napi::bindgen_prelude::spawn(async move {
      let _ = tokio::time::timeout(Duration::from_secs(1), redis.quit()).await;
    });
  }
}
