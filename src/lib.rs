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
