'use strict'
// @sinonjs/fake-timers in a plain Node script, fake time never advanced.
//   node sinon.cjs after-load    redis-guard is loaded first, then the fakes are installed
//   node sinon.cjs before-load   the fakes are installed first, then redis-guard is loaded
// Phase 1, `install()` with its defaults (every timer API, Date, performance, hrtime,
// queueMicrotask, process.nextTick, and the properties of `node:timers`): the store, the lock
// helpers, leases and withLock. The defaults fake `process.nextTick` on the real process object,
// which Node's own net/http code calls, so no HTTP server can work under them (the
// `http-control` check shows it without redis-guard); phase 2 therefore runs the Express checks
// under `install({ toNotFake: ['nextTick'] })`, through node:http (and through fetch when the
// control shows that fetch itself answers under those fakes; it does not on Node 20).
// Prints one RG_FAKE_TIMERS line per check (scenario.cjs); exits 1 when a check failed.
// Env: REDIS_URL (required), REDIS_GUARD_ENTRY (default: this repository's index.js).

// The real timers, before anything is faked (install() also patches the `node:timers` module).
const { setTimeout: realSetTimeout, clearTimeout: realClearTimeout } = require('node:timers')
const FakeTimers = require('@sinonjs/fake-timers')
const sc = require('./scenario.cjs')

const mode = process.argv[2]
if (mode !== 'after-load' && mode !== 'before-load') {
  process.stderr.write('usage: node sinon.cjs after-load|before-load\n')
  process.exit(2)
}

async function main() {
  const ctx = sc.context(`sinon-${mode}`, { setTimeout: realSetTimeout, clearTimeout: realClearTimeout })
  if (mode === 'after-load') sc.load()
  let clock = FakeTimers.install()
  if (mode === 'before-load') sc.load()

  let failed = 0
  const run = async (fn, ...args) => {
    try {
      await fn(ctx, ...args)
    } catch (e) {
      failed++
      process.stderr.write(`[sinon ${mode}] ${e && e.stack ? e.stack : e}\n`)
    }
  }
  let fakeStart = clock.now
  let fakeMovedMs = 0

  // Phase 1: install() defaults.
  await run(sc.fakesOn)
  await sc.httpControl(ctx)
  const client = sc.newClient(ctx)
  await run(sc.ready, client)
  await run(sc.store, client)
  await run(sc.cache, client)
  await run(sc.helpers, client)
  await run(sc.lease, client)
  await run(sc.leaseExpiry, client)
  await run(sc.withLock, client)
  fakeMovedMs += clock.now - fakeStart
  clock.uninstall()

  // Phase 2: everything but process.nextTick, for Node's HTTP stack.
  clock = FakeTimers.install({ toNotFake: ['nextTick'] })
  fakeStart = clock.now
  await run(sc.fakesOn)
  const control = await sc.httpControl(ctx)
  await run(sc.express, client, 'http')
  // fetch (undici) schedules with the global timers of its realm, here the faked ones: only
  // when the control shows fetch itself works under these fakes is it used against the app.
  if (control.fetch) await run(sc.express, client, 'fetch')
  await run(sc.close, client)
  fakeMovedMs += clock.now - fakeStart

  // Fake time never moved during the checks (nothing here advances it).
  if (fakeMovedMs !== 0) failed++
  sc.emit({ runner: ctx.runner, check: 'done', ok: failed === 0, failed, fakeMovedMs })
  clock.uninstall()
  // A hung call may have left handles (a listening server, a pending batch): do not wait for them.
  process.exit(failed ? 1 : 0)
}

main().catch((e) => {
  process.stderr.write(`[sinon ${mode}] ${e && e.stack ? e.stack : e}\n`)
  process.exit(1)
})
