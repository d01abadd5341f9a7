//! The connection layer: configuration (the option table, URL and environment) the client, and its pub/sub subscriber.

pub mod advice;
pub mod client;
pub mod config;
pub mod options;
pub mod subscriber;
