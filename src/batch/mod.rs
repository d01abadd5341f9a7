//! The batch core: the one JS↔Rust crossing that every feature rides, and the one way a batch
//! meets Redis.
//!
//! JS (`lib/batch.js`) collects the calls of an event-loop turn and submits them at once:
//! an op byte and a key per call, `width_in` numbers per call, and, for features that send
//! bytes, one buffer with every call's bytes appended (each call's byte length is then the last
//! of its numbers). The answer comes back through one persistent callback (`completion.rs`):
//! `width_out` numbers per call — the first a status (negative: an error code, `Code::as_num`)
//! — and, for features that return bytes, one buffer: the last two numbers of such a call are
//! the offset and length of its bytes (offset -1: none). No per-call copy, promise or crossing.
//!
//! A feature plugs in through [`Feature`]: parse a call, answer what needs no Redis, plan the
//! script calls (per cluster slot), apply Redis's replies, and answer from its fallback policy.
//! [`run`] holds the rest once for every feature: the closed client, the open circuit, the
//! deadline, one classification of what went wrong ([`Failure`]), and reading what the scripts
//! answer alike for an op (`reply.rs`).

pub mod completion;
pub mod echo;
pub mod reply;
pub mod settle;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use fred::types::Value;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::clock::now_ms;
use crate::connection::client::ClientInner;
use crate::error::{Code, GuardError};
use crate::redis::scripts::{self, Call};
use completion::{Answer, Completions};

/// One call of a batch as JS sent it.
pub struct CallIn<'a> {
  pub op: u8,
  pub key: &'a str,
  /// The call's `width_in` numbers (without the byte length).
  pub nums: &'a [f64],
  /// The call's bytes (empty when the feature sends none).
  pub bytes: &'a [u8],
}

/// Where one call's answer goes: its numbers, and the batch's byte buffer.
pub struct Out<'a> {
  pub nums: &'a mut [f64],
  blob: &'a mut Vec<u8>,
}

impl Out<'_> {
  /// Answer with `nums` (at most the feature's numbers; the rest stay 0).
  pub fn set(&mut self, nums: &[f64]) {
    self.nums[..nums.len()].copy_from_slice(nums);
  }

  /// Answer with the error `code` (the status number).
  pub fn fail(&mut self, code: Code) {
    self.nums[0] = code.as_num();
  }

  /// Attach `bytes` to the answer (features with `BYTES_OUT` only): appended to the batch's
  /// buffer, their offset and length in the last two numbers.
  pub fn set_bytes(&mut self, bytes: &[u8]) {
    let n = self.nums.len();
    self.nums[n - 2] = self.blob.len() as f64;
    self.nums[n - 1] = bytes.len() as f64;
    self.blob.extend_from_slice(bytes);
  }
}

/// Why Redis did not decide a call: one classification for every feature.
#[derive(Debug)]
pub enum Failure {
  /// The client was closed.
  Closed,
  /// Redis cannot take calls now: the circuit is open (nothing was sent), the deadline fired,
  /// the connection failed, or Redis answered BUSY / LOADING / OOM / a redirection that kept
  /// moving. The feature's `onUnavailable` policy decides.
  Unavailable(Option<GuardError>),
  /// Redis answered an error that will not go away by itself (NOPERM, WRONGTYPE, a script
  /// error, a reply of the wrong shape). Features surface it, or fall back, as they document.
  Refused(GuardError),
}

impl Failure {
  /// The error code a caller would see for this failure.
  pub fn code(&self) -> Code {
    match self {
      Failure::Closed => Code::Closed,
      Failure::Unavailable(Some(e)) if e.code == Code::Timeout => Code::Timeout,
      Failure::Unavailable(_) => Code::Unavailable,
      Failure::Refused(e) => e.code,
    }
  }

  /// A script that failed for an op, or a reply of the wrong shape: `Refused` with
  /// `Code::Redis` and `message`.
  pub fn script_error(message: impl Into<String>) -> Failure {
    Failure::Refused(GuardError::new(Code::Redis, message))
  }
}

/// A feature's `onUnavailable` option: the policy named `value` among `choices`, or a
/// `Code::Config` error that lists them.
pub fn policy<P: Copy>(value: &str, choices: &[(&str, P)]) -> std::result::Result<P, GuardError> {
  match choices.iter().find(|(name, _)| *name == value) {
    Some((_, p)) => Ok(*p),
    None => {
      let names: Vec<String> = choices.iter().map(|(n, _)| format!("'{n}'")).collect();
      let list = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
      };
      Err(GuardError::config(format!(
        "option `onUnavailable` must be {list}"
      )))
    }
  }
}

/// `BUSY` (a script is running), `LOADING` (the dataset is loading) and `OOM` replies: nothing
/// was written and the server cannot take this call now.
fn is_unusable_now(e: &fred::error::Error) -> bool {
  let d = e.details();
  d.starts_with("BUSY ") || d.starts_with("LOADING ") || d.starts_with("OOM ")
}

/// Classify the error of one script call. The second value: whether Redis may still apply the
/// call's writes (the deadline fired or the connection failed after it was sent).
fn classify(client: &Arc<ClientInner>, e: &fred::error::Error) -> (Failure, bool) {
  let ge = client.on_error(e);
  match ge.code {
    // Includes fred's "Failed to route command." (no connection: nothing was sent), which
    // `from_fred` classifies as unavailable; and a redirection that kept moving.
    Code::Unavailable | Code::Timeout => (Failure::Unavailable(Some(ge)), true),
    _ if is_unusable_now(e) => (Failure::Unavailable(Some(ge)), false),
    _ => (Failure::Refused(ge), false),
  }
}

/// A feature on the batch core. Its methods run on the tokio thread.
pub trait Feature: Send + Sync + 'static {
  /// The feature's name in metrics (`feature` label): calls, fallbacks, errors.
  const NAME: &'static str;
  /// One validated call.
  type Op: Send + Sync;
  /// Numbers per call from JS (without the byte length).
  const WIDTH_IN: usize;
  /// Numbers per call back to JS (with offset and length when `BYTES_OUT`).
  const WIDTH_OUT: usize;
  /// Whether calls send bytes.
  const BYTES_IN: bool = false;
  /// Whether answers carry bytes.
  const BYTES_OUT: bool = false;
  /// Whether `unavailable` answers every failure, a closed client and a refusal too (the
  /// rate-limit store: a limiter falls back rather than fail a request). Otherwise those fail
  /// with their code (`Failure::code`), and only `Failure::Unavailable` reaches `unavailable`.
  /// The default is `false`.
  const POLICY_ON_EVERY_FAILURE: bool = false;

  /// The client this feature talks through.
  fn client(&self) -> &Arc<ClientInner>;
  /// Validate one call; an error answers that call alone.
  fn parse(&self, call: CallIn<'_>) -> std::result::Result<Self::Op, GuardError>;
  /// Answer a call that needs no Redis (returns true when answered).
  fn local(&self, _op: &mut Self::Op, _now: u64, _out: &mut Out<'_>) -> bool {
    false
  }
  /// The script calls for `ops`, and for each the indices (into `ops`) of the ops it carries,
  /// in the order of its reply. `cluster`: one call per slot at most.
  fn plan(&self, ops: &[&Self::Op], cluster: bool) -> (Vec<Vec<usize>>, Vec<Call>);
  /// Split one script call's reply into the replies of its `n` ops (`first`: its first op);
  /// None when the reply does not have the expected shape. The default: an array of one value
  /// per op.
  fn split<'v>(&self, _first: &Self::Op, n: usize, reply: &'v Value) -> Option<Vec<&'v [Value]>> {
    match reply {
      Value::Array(a) if a.len() == n => Some(a.chunks(1).collect()),
      _ => None,
    }
  }
  /// Apply Redis's reply to one op, received at `now`. An error: the op fails as that.
  fn apply(
    &self,
    op: &Self::Op,
    reply: &[Value],
    now: u64,
    out: &mut Out<'_>,
  ) -> std::result::Result<(), Failure>;
  /// Answer, from the feature's policy, an op that Redis did not decide (every failure with
  /// `POLICY_ON_EVERY_FAILURE`, else `Failure::Unavailable` only).
  fn unavailable(&self, op: &Self::Op, why: &Failure, now: u64, out: &mut Out<'_>);
  /// Ops whose writes Redis may still apply although the caller was answered otherwise (see
  /// `lock.rs`). The default does nothing.
  fn in_doubt(&self, _ops: &[&Self::Op]) {}
}

/// One batch as JS submitted it.
pub struct Input {
  pub ops: Vec<u8>,
  pub keys: Vec<String>,
  pub nums: Vec<f64>,
  pub bytes: Vec<u8>,
}

/// Answer `op` that Redis did not decide: from `f`'s policy, or with the failure's code when
/// the policy is not for this failure (`Feature::POLICY_ON_EVERY_FAILURE`). Counts a fallback
/// when the policy answered an unavailable Redis (not with an error).
fn fall_back<F: Feature>(
  f: &F,
  op: &F::Op,
  why: &Failure,
  now: u64,
  out: &mut Out<'_>,
  n: &mut u64,
) {
  if F::POLICY_ON_EVERY_FAILURE || matches!(why, Failure::Unavailable(_)) {
    f.unavailable(op, why, now, out);
  } else {
    out.fail(why.code());
  }
  if matches!(why, Failure::Unavailable(_)) && out.nums[0] >= 0.0 {
    *n += 1;
  }
}

/// Run one batch of feature `f`, and count it in the client's metrics (`F::NAME`).
pub async fn run<F: Feature>(f: &F, input: Input) -> Answer {
  let n = input.keys.len();
  let mut fallbacks = 0u64;
  let answer = run_batch_of(f, input, &mut fallbacks).await;
  let m = f.client().metrics.feature(F::NAME);
  m.calls
    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
  m.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
  m.fallbacks
    .fetch_add(fallbacks, std::sync::atomic::Ordering::Relaxed);
  let errors = answer.0.chunks(F::WIDTH_OUT).filter(|c| c[0] < 0.0).count() as u64;
  m.errors
    .fetch_add(errors, std::sync::atomic::Ordering::Relaxed);
  answer
}

async fn run_batch_of<F: Feature>(f: &F, input: Input, fallbacks: &mut u64) -> Answer {
  let n = input.keys.len();
  let width = F::WIDTH_OUT;
  let mut nums = vec![0f64; n * width];
  let mut blob = Vec::new();
  macro_rules! out {
    ($i:expr) => {
      Out {
        nums: &mut nums[$i * width..($i + 1) * width],
        blob: &mut blob,
      }
    };
  }
  if F::BYTES_OUT {
    for i in 0..n {
      nums[i * width + width - 2] = -1.0;
    }
  }
  // Parse: a bad call answers alone.
  let stride = F::WIDTH_IN + F::BYTES_IN as usize;
  let mut at = 0usize;
  let mut ops: Vec<Option<F::Op>> = Vec::with_capacity(n);
  for i in 0..n {
    let call_nums =
      &input.nums[(i * stride).min(input.nums.len())..((i + 1) * stride).min(input.nums.len())];
    let len = if F::BYTES_IN {
      call_nums.get(F::WIDTH_IN).copied().unwrap_or(0.0).max(0.0) as usize
    } else {
      0
    };
    let bytes = input.bytes.get(at..at + len).unwrap_or(&[]);
    at += len;
    let parsed = if call_nums.len() < stride || bytes.len() != len {
      Err(GuardError::new(Code::InvalidArg, "malformed batch"))
    } else {
      f.parse(CallIn {
        op: input.ops[i],
        key: &input.keys[i],
        nums: &call_nums[..F::WIDTH_IN],
        bytes,
      })
    };
    match parsed {
      Ok(op) => ops.push(Some(op)),
      Err(e) => {
        out!(i).fail(e.code);
        ops.push(None);
      }
    }
  }
  // What needs no Redis.
  let now = now_ms();
  let mut pending: Vec<usize> = Vec::with_capacity(n);
  for (i, op) in ops.iter_mut().enumerate() {
    if let Some(op) = op {
      if !f.local(op, now, &mut out!(i)) {
        pending.push(i);
      }
    }
  }
  if pending.is_empty() {
    return (nums, F::BYTES_OUT.then_some(blob));
  }
  let todo: Vec<&F::Op> = pending.iter().filter_map(|&i| ops[i].as_ref()).collect();
  let client = f.client();
  let fail_all = |why: Failure, nums: &mut Vec<f64>, blob: &mut Vec<u8>, fallbacks: &mut u64| {
    let now = now_ms();
    for (j, &i) in pending.iter().enumerate() {
      let mut o = Out {
        nums: &mut nums[i * width..(i + 1) * width],
        blob,
      };
      fall_back(f, todo[j], &why, now, &mut o, fallbacks);
    }
  };
  if client.is_closed() {
    fail_all(Failure::Closed, &mut nums, &mut blob, fallbacks);
    return (nums, F::BYTES_OUT.then_some(blob));
  }
  if !client.usable().await {
    fail_all(Failure::Unavailable(None), &mut nums, &mut blob, fallbacks);
    return (nums, F::BYTES_OUT.then_some(blob));
  }
  let (groups, calls) = f.plan(&todo, client.is_cluster());
  let sent = std::time::Instant::now();
  let results = match client
    .run(async { Ok(scripts::run_batch(&client.redis, &calls).await) })
    .await
  {
    Ok(r) => r,
    Err(e) => {
      // The deadline fired: Redis may still apply every call of the batch.
      f.in_doubt(&todo);
      fail_all(
        Failure::Unavailable(Some(e)),
        &mut nums,
        &mut blob,
        fallbacks,
      );
      return (nums, F::BYTES_OUT.then_some(blob));
    }
  };
  client.metrics.round_trip(sent.elapsed());
  if F::BYTES_OUT {
    blob.reserve(results.iter().flatten().map(reply::bulk_len).sum());
  }
  // One clock read for the answers of the whole batch.
  let now = now_ms();
  for (group, r) in groups.iter().zip(results.iter()) {
    let replies = match r {
      Ok(v) => match f.split(todo[group[0]], group.len(), v) {
        Some(r) => Ok(r),
        None => Err(Failure::script_error(
          "unexpected reply from a redis-guard script",
        )),
      },
      Err(e) => {
        let (why, doubt) = classify(client, e);
        if doubt {
          let ops: Vec<&F::Op> = group.iter().map(|&j| todo[j]).collect();
          f.in_doubt(&ops);
        }
        Err(why)
      }
    };
    for (k, &j) in group.iter().enumerate() {
      let i = pending[j];
      let mut o = out!(i);
      let res = match &replies {
        Ok(r) => f.apply(todo[j], r[k], now, &mut o),
        Err(why) => {
          fall_back(f, todo[j], why, now, &mut o, fallbacks);
          Ok(())
        }
      };
      if let Err(why) = res {
        fall_back(f, todo[j], &why, now, &mut o, fallbacks);
      }
    }
  }
  (nums, F::BYTES_OUT.then_some(blob))
}

/// A feature bound to the batch core, as the JS batcher sees it.
pub trait Runner: Send + Sync + 'static {
  fn widths(&self) -> (usize, usize, bool, bool);
  fn run(self: Arc<Self>, input: Input) -> Pin<Box<dyn Future<Output = Answer> + Send>>;
}

impl<F: Feature> Runner for F {
  fn widths(&self) -> (usize, usize, bool, bool) {
    (F::WIDTH_IN, F::WIDTH_OUT, F::BYTES_IN, F::BYTES_OUT)
  }
  fn run(self: Arc<Self>, input: Input) -> Pin<Box<dyn Future<Output = Answer> + Send>> {
    Box::pin(async move { run(&*self, input).await })
  }
}

/// The native half of a JS `Batcher` (lib/batch.js), for one feature: submit batches, get
/// their answers through one callback. Made by a feature's `batcher()`.
#[napi]
pub struct NativeBatcher {
  runner: Arc<dyn Runner>,
  done: Completions,
}

impl NativeBatcher {
  pub fn new(runner: Arc<dyn Runner>) -> Self {
    NativeBatcher {
      runner,
      done: Completions::default(),
    }
  }
}

#[napi]
impl NativeBatcher {
  /// Numbers per call in (without the byte length).
  #[napi(getter)]
  pub fn width_in(&self) -> u32 {
    self.runner.widths().0 as u32
  }

  /// Numbers per call out (with offset and length when answers carry bytes).
  #[napi(getter)]
  pub fn width_out(&self) -> u32 {
    self.runner.widths().1 as u32
  }

  /// Whether calls send bytes (their length then follows their numbers).
  #[napi(getter)]
  pub fn bytes_in(&self) -> bool {
    self.runner.widths().2
  }

  /// Whether answers carry bytes (offset and length are a call's last two numbers).
  #[napi(getter)]
  pub fn bytes_out(&self) -> bool {
    self.runner.widths().3
  }

  /// Where batch answers go: `onDone(id, numbers, bytes)`.
  #[napi]
  pub fn set_done(
    &self,
    on_done: Function<'_, FnArgs<(u32, Float64Array, Option<Buffer>)>, ()>,
  ) -> Result<()> {
    self.done.set(on_done)
  }

  /// Keep Node's event loop alive while batches are in flight (`true`), or not (`false`).
  #[napi]
  pub fn keep_alive(&self, env: Env, on: bool) -> Result<()> {
    self.done.keep_alive(&env, on)
  }

  /// Submit batch `id`: per call an op byte, a key (the calls' keys joined in `keys`, each
  /// `lens[i]` UTF-16 units long), `widthIn` numbers (and, when calls send bytes, their byte
  /// length) in `nums`, and the calls' bytes appended in `bytes`. One string crosses instead
  /// of one per call. Answered through the `setDone` callback; never fails once submitted.
  #[napi]
  pub fn submit(
    &self,
    id: u32,
    ops: Uint8Array,
    keys: String,
    lens: Uint32Array,
    nums: Option<Float64Array>,
    bytes: Option<Uint8Array>,
  ) -> Result<()> {
    let n = lens.len();
    let (w_in, w_out, b_in, _) = self.runner.widths();
    let stride = w_in + b_in as usize;
    let nums = nums.map(|a| a.to_vec()).unwrap_or_default();
    if ops.len() != n || nums.len() != n * stride {
      return Err(GuardError::new(Code::InvalidArg, "batch arrays differ in length").into());
    }
    let lens = lens.to_vec();
    // Keys of ASCII only (the usual case) are cut on the tokio thread; others here, where a
    // malformed batch can still be refused.
    let ascii = keys.is_ascii() && keys.len() == lens.iter().map(|&l| l as usize).sum::<usize>();
    let split = if ascii {
      None
    } else {
      Some(split_keys(&keys, &lens).ok_or_else(|| {
        Error::from(GuardError::new(
          Code::InvalidArg,
          "batch keys differ from their lengths",
        ))
      })?)
    };
    // Only the copies are made here, on the JS thread; the rest runs on the tokio thread.
    let ops = ops.to_vec();
    let bytes = bytes.map(|b| b.to_vec()).unwrap_or_default();
    let runner = self.runner.clone();
    self.done.spawn(id, n, w_out, move || {
      let keys = split.unwrap_or_else(|| {
        let mut at = 0;
        lens
          .iter()
          .map(|&l| {
            let k = keys[at..at + l as usize].to_owned();
            at += l as usize;
            k
          })
          .collect()
      });
      runner.run(Input {
        ops,
        keys,
        nums,
        bytes,
      })
    })
  }
}

/// The keys joined in `joined` (as JS's `join('')` made it, converted to UTF-8), cut at `lens`
/// UTF-16 units each: what converting each key alone gives. A surrogate pair that only the
/// joining made (a key ending in a lone high surrogate, the next starting with a lone low one)
/// is cut back into two U+FFFD, as each lone surrogate converts alone. None when the lengths do
/// not add up to the string.
fn split_keys(joined: &str, lens: &[u32]) -> Option<Vec<String>> {
  let mut chars = joined.chars();
  let mut out = Vec::with_capacity(lens.len());
  let mut carry = false;
  for &l in lens {
    let l = l as usize;
    let mut key = String::new();
    let mut units = 0;
    if carry && l > 0 {
      key.push(char::REPLACEMENT_CHARACTER);
      units = 1;
      carry = false;
    }
    while units < l {
      let c = chars.next()?;
      let u = c.len_utf16();
      if units + u > l {
        key.push(char::REPLACEMENT_CHARACTER);
        units += 1;
        carry = true;
      } else {
        key.push(c);
        units += u;
      }
    }
    out.push(key);
  }
  (chars.next().is_none() && !carry).then_some(out)
}

#[cfg(test)]
mod tests {
  use super::split_keys;

  #[test]
  fn keys_cut_as_each_converts_alone() {
    assert_eq!(split_keys("abc", &[1, 0, 2]).unwrap(), ["a", "", "bc"]);
    assert_eq!(
      split_keys("é€😀x", &[1, 1, 2, 1]).unwrap(),
      ["é", "€", "😀", "x"]
    );
    // "a\u{D83D}" + "\u{DE00}b": joined they make 😀; alone each lone half is U+FFFD.
    assert_eq!(
      split_keys("a😀b", &[2, 2]).unwrap(),
      ["a\u{FFFD}", "\u{FFFD}b"]
    );
    assert_eq!(
      split_keys("a😀b", &[2, 0, 2]).unwrap(),
      ["a\u{FFFD}", "", "\u{FFFD}b"]
    );
    assert!(split_keys("abc", &[1, 1]).is_none(), "a char left over");
    assert!(split_keys("ab", &[1, 2]).is_none(), "too few chars");
    assert!(split_keys("a😀", &[2]).is_none(), "half a pair left over");
  }
}
