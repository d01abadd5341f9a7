//! Logging: redis-guard emits `tracing` events (target `redis_guard`, with a `client` field); a
//! global layer forwards them to the JS logger registered by that client. `lib/client.js` supplies a
//! default logger (one line per state change) and lets the app plug in its own or silence it.
//! Every message and field is masked by the client before it is emitted.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// A JS function called with one JSON string `{ level, message, fields }`. Weak: it never keeps
/// Node's event loop alive.
pub type JsLogger = ThreadsafeFunction<String, (), String, napi::Status, false, true>;

fn registry() -> &'static Mutex<HashMap<u32, JsLogger>> {
  static R: OnceLock<Mutex<HashMap<u32, JsLogger>>> = OnceLock::new();
  R.get_or_init(|| {
    // Installed once per process: forwards our events to the right client's JS logger. If the
    // embedding process already set a global subscriber, our events go to it instead.
    let subscriber = tracing_subscriber::registry().with(Forward);
    let _ = tracing::subscriber::set_global_default(subscriber);
    Mutex::new(HashMap::new())
  })
}

/// Register (or, with `None`, silence) the JS logger of client `id`.
pub fn register(id: u32, logger: Option<JsLogger>) {
  let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
  match logger {
    Some(l) => {
      r.insert(id, l);
    }
    None => {
      r.remove(&id);
    }
  }
}

/// Forget client `id`'s logger (on close).
pub fn unregister(id: u32) {
  register(id, None)
}

struct Forward;

#[derive(Default)]
struct Fields {
  client: Option<u64>,
  message: String,
  fields: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
  fn record_u64(&mut self, field: &Field, value: u64) {
    if field.name() == "client" {
      self.client = Some(value);
    } else {
      self.fields.insert(field.name().into(), value.into());
    }
  }
  fn record_i64(&mut self, field: &Field, value: i64) {
    self.fields.insert(field.name().into(), value.into());
  }
  fn record_bool(&mut self, field: &Field, value: bool) {
    self.fields.insert(field.name().into(), value.into());
  }
  fn record_str(&mut self, field: &Field, value: &str) {
    if field.name() == "message" {
      self.message = value.to_string();
    } else {
      self.fields.insert(field.name().into(), value.into());
    }
  }
  fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
    if field.name() == "message" {
      self.message = format!("{value:?}");
    } else {
      self
        .fields
        .insert(field.name().into(), format!("{value:?}").into());
    }
  }
}

impl<S: tracing::Subscriber> Layer<S> for Forward {
  fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
    if event.metadata().target() != "redis_guard" {
      return;
    }
    let mut f = Fields::default();
    event.record(&mut f);
    let Some(id) = f.client else { return };
    let r = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(logger) = r.get(&(id as u32)) {
      let level = event.metadata().level().as_str().to_ascii_lowercase();
      let line = serde_json::json!({ "level": level, "message": f.message, "fields": f.fields });
      logger.call(line.to_string(), ThreadsafeFunctionCallMode::NonBlocking);
    }
  }
}

/// Make sure the forwarding layer is installed before the first event.
pub fn init() {
  let _ = registry();
}
