#![deny(clippy::all)]
//! redis-guard: rate limiting, distributed locks and health checks on Redis for Express,
//! as a Node.js addon. This file only wires the modules; see each for its concept.

mod client;
mod completion;
mod config;
mod error;
mod fallback;
mod lock;
mod log;
mod runtime;
mod scripts;
mod slot;
mod store;

/// mimalloc for the addon's own (Rust) allocations. A batch frees many small strings and
/// allocates its boxed future (~17 KB: fred's command futures are ~8 KB each); with glibc's
/// allocator every such large request consolidated the freed small chunks first, and malloc and
/// free took ~15 % of the process's CPU in the lock benchmark (see the README's Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
