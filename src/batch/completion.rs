//! How a batch's result comes back to JavaScript: one persistent callback per batcher, not a
//! promise per call. napi-rs gives every `async fn` call its own promise and its own threadsafe
//! function (a libuv handle made and torn down per call), which costs more CPU than the Redis
//! work of a whole batch. Here JS submits a batch with an id (a synchronous call: the arguments
//! are converted on the JS thread), the batch runs on the tokio runtime, and its numbers come
//! back through one threadsafe function, made once, as `(id, Float64Array, Buffer | null)`: the
//! numbers of every call, and the bytes of those that return bytes (see `batch/mod.rs`).
//!
//! The function is weak: JS refs it (`keepAlive(true)`) only while it has batches in flight, so
//! it never keeps Node's event loop alive when idle, or after `close()`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};

/// What a batch hands back: its numbers and, when any call returns bytes, one buffer of them.
pub type Answer = (Vec<f64>, Option<Vec<u8>>);

type Args = FnArgs<(u32, Float64Array, Option<Buffer>)>;

/// The JS side: `(id, numbers, bytes)`. (Spelled out in the napi signatures, which napi-rs turns
/// into TypeScript: an alias would name a type `binding.d.ts` does not define.)
pub type DoneCallback<'a> = Function<'a, Args, ()>;

type DoneFn = ThreadsafeFunction<Args, (), Args, Status, false, true>;

/// The completion channel of one batcher. Its methods take `&self`: napi-rs refuses a `&mut self`
/// call on an object while one of its `async` methods (e.g. `healthCheck`) is pending.
#[derive(Default)]
pub struct Completions {
  tsfn: Mutex<Option<Arc<DoneFn>>>,
  referred: AtomicBool,
}

impl Completions {
  /// Route results to `f` from now on.
  pub fn set(&self, f: DoneCallback<'_>) -> Result<()> {
    let tsfn = f
      .build_threadsafe_function()
      .weak::<true>()
      .callee_handled::<false>()
      .build()?;
    *self.tsfn.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(tsfn));
    self.referred.store(false, Ordering::Relaxed);
    Ok(())
  }

  /// Keep Node's event loop alive (`on`: batches in flight) or not. JS thread only. (napi-rs's
  /// own `refer`/`unref` need the function unshared, and batches in flight hold clones.)
  pub fn keep_alive(&self, env: &Env, on: bool) -> Result<()> {
    let Some(t) = self.current() else {
      return Ok(());
    };
    if on == self.referred.load(Ordering::Relaxed) {
      return Ok(());
    }
    t.handle.with_read_aborted(|aborted| {
      if aborted {
        return Ok(());
      }
      let raw = t.handle.get_raw();
      // SAFETY: `raw` is a live threadsafe function (not aborted, held by `t`), and napi-rs
      // calls us on the JS thread with its env.
      let status = unsafe {
        if on {
          napi::sys::napi_ref_threadsafe_function(env.raw(), raw)
        } else {
          napi::sys::napi_unref_threadsafe_function(env.raw(), raw)
        }
      };
      if status == napi::sys::Status::napi_ok {
        self.referred.store(on, Ordering::Relaxed);
        Ok(())
      } else {
        Err(Error::new(
          Status::GenericFailure,
          "napi_(un)ref_threadsafe_function failed",
        ))
      }
    })
  }

  fn current(&self) -> Option<Arc<DoneFn>> {
    self.tsfn.lock().unwrap_or_else(|e| e.into_inner()).clone()
  }

  /// Run the batch that `make` builds (`items` calls, `width` numbers each) on the tokio runtime
  /// and hand its answer to the callback with `id`. The batch's future is made and boxed there,
  /// not here: it holds fred's command futures (~8 KB each, ~17 KB for a lock batch), which were
  /// otherwise copied several times on the JS thread on their way into the runtime. Should the
  /// batch panic (a bug), every call of it still gets an answer, `ERR_REDIS_GUARD_UNAVAILABLE`,
  /// rather than waiting forever and keeping the loop alive.
  pub fn spawn<M, F>(&self, id: u32, items: usize, width: usize, make: M) -> Result<()>
  where
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = Answer> + Send + 'static,
  {
    let Some(tsfn) = self.current() else {
      return Err(Error::new(
        Status::GenericFailure,
        "no completion callback registered",
      ));
    };
    napi::bindgen_prelude::spawn(async move {
      let batch = std::panic::AssertUnwindSafe(async move { Box::pin(make()).await });
      let (nums, bytes) = match batch.catch_unwind().await {
        Ok(out) => out,
        Err(_) => {
          tracing::error!(target: "redis_guard", "internal error: a batch panicked; its calls fail as unavailable");
          let mut nums = vec![0.0; items * width];
          for i in 0..items {
            nums[i * width] = crate::error::Code::Unavailable.as_num();
          }
          (nums, None)
        }
      };
      // Fails only while Node tears the environment down: nobody is left to answer.
      let _ = tsfn.call(
        (id, Float64Array::new(nums), bytes.map(Buffer::from)).into(),
        ThreadsafeFunctionCallMode::NonBlocking,
      );
    });
    Ok(())
  }
}
