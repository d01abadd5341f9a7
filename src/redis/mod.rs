//! Talking to Redis: the Lua scripts and how a batch of script calls is sent; cluster slots;
//! deleting by prefix.

pub mod limits;
pub mod scan;
pub mod scripts;
pub mod slot;
