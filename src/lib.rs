#![deny(clippy::all)]
//! redis-guard: rate limiting, distributed locks and health checks on Redis, as a Node.js addon.
//! This file only wires the modules. The layers, bottom up:
//! - `connection/`: configuration (options, URL, environment) and the client (circuit, health);
//! - `redis/`: the Lua scripts, how a batch of script calls is sent, cluster slots;
//! - `batch/`: the one JS↔Rust crossing every feature rides (payload, runner, completion);
//! - `fallback/`: the bounded in-process state used while Redis is unavailable;
//! - the features, each one file on the batch core: `store.rs` (rate limits), `lock.rs`,
//!   `cache.rs` (the query cache), `idempotency.rs` (idempotency keys).

mod batch;
mod cache;
mod clock;
mod connection;
mod error;
mod fallback;
mod idempotency;
mod lock;
mod log;
mod metrics;
mod ops;
mod redis;
mod runtime;
mod store;

/// mimalloc for the addon's own (Rust) allocations. A batch frees many small strings and
/// allocates its boxed future (~17 KB: fred's command futures are ~8 KB each); with glibc's
/// allocator every such large request consolidated the freed small chunks first, and malloc and
/// free took ~15 % of the process's CPU in the lock benchmark (see the README's Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
