//! A diagnostic feature that answers every call itself, without Redis: the cost of the batch
//! core's crossing alone, numbers-only and with bytes each way (`bench/`, `__tests__/batch.test.mjs`).

use std::sync::Arc;

use fred::types::Value;
use napi_derive::napi;

use super::{CallIn, Failure, Feature, NativeBatcher, Out};
use crate::connection::client::{ClientInner, NativeClient};
use crate::error::GuardError;
use crate::redis::scripts::Call;

/// Echo: one number in; out `[0, number, key length]` (numbers only) or, with bytes,
/// `[0, number, offset, length]` and the same bytes back.
struct Echo<const BYTES: bool> {
  client: Arc<ClientInner>,
}

impl<const BYTES: bool> Feature for Echo<BYTES> {
  const NAME: &'static str = "echo";
  type Op = (f64, Vec<u8>, usize);
  const WIDTH_IN: usize = 1;
  const WIDTH_OUT: usize = if BYTES { 4 } else { 3 };
  const BYTES_IN: bool = BYTES;
  const BYTES_OUT: bool = BYTES;

  fn client(&self) -> &Arc<ClientInner> {
    &self.client
  }
  fn parse(&self, call: CallIn<'_>) -> Result<Self::Op, GuardError> {
    Ok((call.nums[0], call.bytes.to_vec(), call.key.len()))
  }
  fn local(&self, op: &mut Self::Op, _now: u64, out: &mut Out<'_>) -> bool {
    if BYTES {
      out.set(&[0.0, op.0]);
      out.set_bytes(&op.1);
    } else {
      out.set(&[0.0, op.0, op.2 as f64]);
    }
    true
  }
  fn plan(&self, _ops: &[&Self::Op], _cluster: bool) -> (Vec<Vec<usize>>, Vec<Call>) {
    (Vec::new(), Vec::new())
  }
  fn apply(&self, _: &Self::Op, _: &[Value], _: u64, _: &mut Out<'_>) -> Result<(), Failure> {
    Ok(())
  }
  fn unavailable(&self, _: &Self::Op, why: &Failure, _: u64, out: &mut Out<'_>) {
    out.fail(why.code());
  }
}

/// A batcher that echoes its calls without touching Redis (diagnostics: the crossing's own
/// cost). `bytes`: calls carry bytes, echoed back. The default value of `bytes` is `false`.
#[napi]
#[cfg_attr(test, allow(dead_code))] // called from JS only
pub fn echo_batcher(client: &NativeClient, bytes: Option<bool>) -> NativeBatcher {
  let client = client.inner.clone();
  if bytes.unwrap_or(false) {
    NativeBatcher::new(Arc::new(Echo::<true> { client }))
  } else {
    NativeBatcher::new(Arc::new(Echo::<false> { client }))
  }
}
