//! Reading one op's reply (`Feature::apply`) where the scripts answer alike: the OOM outcome of
//! the scripts whose per-op loop ends with `op_outcome!` (`redis/scripts.rs`: the cache, lock and
//! idempotency scripts), and the bytes of a bulk reply.

use fred::types::Value;

use super::Failure;

/// What such a script answers for an op when Redis ran out of memory inside the script:
/// nothing was written, and the feature's `onUnavailable` policy decides for the op.
pub const OOM: i64 = -2;

/// The reply of one op (the first value of its share of the reply), or
/// `Failure::Unavailable` when it is [`OOM`].
pub fn op_reply(reply: &[Value]) -> Result<&Value, Failure> {
  match &reply[0] {
    Value::Integer(OOM) => Err(Failure::Unavailable(None)),
    r => Ok(r),
  }
}

/// The bytes of a bulk reply (`None` for any other kind of reply).
pub fn bytes_of(v: &Value) -> Option<&[u8]> {
  match v {
    Value::Bytes(b) => Some(b),
    Value::String(s) => Some(s.as_bytes()),
    _ => None,
  }
}

/// The bytes of every bulk reply in `v` (arrays included): what the answers of a batch may
/// carry, reserved at once in its buffer rather than grown by doubling.
pub fn bulk_len(v: &Value) -> usize {
  match v {
    Value::Array(a) => a.iter().map(bulk_len).sum(),
    v => bytes_of(v).map_or(0, <[u8]>::len),
  }
}
