//! The connection layer: configuration and the client.

pub mod client;
pub mod config;
