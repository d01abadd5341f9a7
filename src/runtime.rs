//! The tokio runtime napi-rs runs our futures (and fred's connection tasks) on. One worker
//! thread: a batch hops to tokio and back once, and fred's router, writer and reader tasks
//! share that thread instead of waking each other across cores. The Node main thread keeps
//! the other core. `REDIS_GUARD_WORKER_THREADS` overrides it (read once, at load).

#[napi_derive::module_init]
fn init_runtime() {
  let threads = std::env::var("REDIS_GUARD_WORKER_THREADS")
    .ok()
    .and_then(|v| v.parse::<usize>().ok())
    .filter(|n| (1..=64).contains(n))
    .unwrap_or(1);
  if let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(threads)
    .thread_name("redis-guard")
    .enable_all()
    .build()
  {
    napi::bindgen_prelude::create_custom_tokio_runtime(rt);
  }
}
