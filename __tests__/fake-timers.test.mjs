// Fake timers (issue 12, item 1): with a test runner's fake timers on and fake time never
// advanced, RedisStore, an express-rate-limit app, acquireLock/releaseLock, leases and withLock
// must all settle in real time against a real Redis. Each runner runs as a child process on the
// bodies in __tests__/fake-timers/ (the checks themselves are in scenario.cjs):
//   - Jest 30: jest.useFakeTimers() with its defaults in beforeEach, and fakeTimers.enableGlobally
//   - Vitest 3: vi.useFakeTimers() in beforeEach, and before redis-guard loads
//   - @sinonjs/fake-timers install() in a plain script, after and before redis-guard loads
// Each child prints one `RG_FAKE_TIMERS {json}` line per check; this file asserts on them and on
// the exit code, and shows the child's output when one fails.
//
// REDIS_GUARD_ENTRY=/path/to/index.js runs the same bodies against another tree (for instance
// the tree before the fix, where they hang); the default is this repository's index.js.
// Run: node --test __tests__/fake-timers.test.mjs

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { startRedis } from './helpers/redis.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FIXTURES = path.join(ROOT, '__tests__', 'fake-timers')
const ENTRY = process.env.REDIS_GUARD_ENTRY || path.join(ROOT, 'index.js')
const MARK = 'RG_FAKE_TIMERS '
/** Real time a child gets before it is killed (a passing one takes 3-8 s). */
const CHILD_TIMEOUT_MS = 50_000

/** What every runner checks (scenario.cjs), in order. */
const LIB_CHECKS = [
  'fakes-on',
  'ready',
  'store',
  'express-http',
  'cache',
  'helpers',
  'lease',
  'lease-expiry',
  'withLock',
  'close',
]

let server
/** Process groups of the children still running (killed if this process exits first). */
const live = new Set()
const killGroup = (pid) => {
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    /* gone */
  }
}
process.on('exit', () => {
  for (const pid of live) killGroup(pid)
})

before(async () => {
  server = await startRedis()
})
after(async () => {
  await server?.stop()
})

/**
 * Run `node ...args` in the repository with REDIS_URL and REDIS_GUARD_ENTRY; resolves
 * `{ code, signal, timedOut, ms, stdout, stderr, markers }` (markers: the parsed RG_FAKE_TIMERS lines).
 */
function runChild(args) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now()
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: {
        ...process.env,
        REDIS_URL: server.url,
        REDIS_GUARD_ENTRY: ENTRY,
        CI: 'true',
        FORCE_COLOR: '0',
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group: a timeout kills Jest's and Vitest's workers too
    })
    live.add(child.pid)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d
    })
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d
    })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      killGroup(child.pid)
    }, CHILD_TIMEOUT_MS)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      live.delete(child.pid)
      killGroup(child.pid) // any worker left behind
      const markers = []
      for (const line of `${stdout}\n${stderr}`.split('\n')) {
        const i = line.indexOf(MARK)
        if (i >= 0) markers.push(JSON.parse(line.slice(i + MARK.length)))
      }
      resolve({ code, signal, timedOut, ms: Date.now() - t0, stdout, stderr, markers })
    })
  })
}

const tail = (s, n = 6000) => (s.length > n ? `...${s.slice(-n)}` : s)

/** A readable account of a child's run, for assertion messages. */
function report(r) {
  const lines = r.markers.map(
    (m) => `  ${m.ok ? 'ok  ' : 'FAIL'} ${m.runner} ${m.check} (${m.realMs} ms)${m.ok ? '' : `: ${m.error}`}`,
  )
  return [
    `exit code ${r.code}${r.signal ? ` signal ${r.signal}` : ''}${r.timedOut ? ` (killed after ${CHILD_TIMEOUT_MS} ms)` : ''}, ${r.ms} ms`,
    'checks:',
    ...(lines.length ? lines : ['  (none)']),
    '--- stdout ---',
    tail(r.stdout),
    '--- stderr ---',
    tail(r.stderr),
  ].join('\n')
}

/** The marker of `runner`/`check`, asserted present and ok. */
function okMarker(r, runner, check) {
  const m = r.markers.find((x) => x.runner === runner && x.check === check)
  assert.ok(m, `no "${check}" result from ${runner}\n${report(r)}`)
  assert.equal(m.ok, true, `${runner} ${check} failed: ${m.error}\n${report(r)}`)
  return m
}

/** The child exited 0 and every runner reported every check ok. */
function assertAllOk(r, runners, checks) {
  for (const runner of runners) for (const check of checks) okMarker(r, runner, check)
  assert.equal(r.timedOut, false, `the child was killed after ${CHILD_TIMEOUT_MS} ms\n${report(r)}`)
  assert.equal(r.code, 0, `exit code ${r.code}\n${report(r)}`)
}

describe('fake timers: every call settles in real time, fake time never advanced', { concurrency: true }, () => {
  test('Jest 30: jest.useFakeTimers() defaults in beforeEach, and fakeTimers.enableGlobally', async () => {
    const r = await runChild([
      'node_modules/jest/bin/jest.js',
      '--config',
      path.join(FIXTURES, 'jest.config.cjs'),
      '--ci',
    ])
    const checks = [...LIB_CHECKS, 'express-fetch']
    assertAllOk(r, ['jest-default', 'jest-global'], checks)
    // Jest's defaults fake everything a library could schedule with, nextTick and queueMicrotask
    // included; with enableGlobally they were on before redis-guard loaded.
    for (const runner of ['jest-default', 'jest-global']) {
      const { setTimeout, setImmediate, queueMicrotask, nextTick, Date, performance } = okMarker(
        r,
        runner,
        'fakes-on',
      ).faked
      assert.deepEqual(
        { setTimeout, setImmediate, queueMicrotask, nextTick, Date, performance },
        { setTimeout: true, setImmediate: true, queueMicrotask: true, nextTick: true, Date: true, performance: true },
        runner,
      )
    }
    assert.match(r.stderr, /Tests:\s+22 passed, 22 total/, report(r))
  })

  test('Vitest 3: vi.useFakeTimers() in beforeEach, and before redis-guard loads', async () => {
    const r = await runChild(['node_modules/vitest/vitest.mjs', 'run', '--root', FIXTURES])
    assertAllOk(r, ['vitest-default', 'vitest-loaded-after'], [...LIB_CHECKS, 'express-fetch'])
    for (const runner of ['vitest-default', 'vitest-loaded-after']) {
      const { setTimeout, setImmediate, Date } = okMarker(r, runner, 'fakes-on').faked
      assert.deepEqual({ setTimeout, setImmediate, Date }, { setTimeout: true, setImmediate: true, Date: true }, runner)
    }
    assert.match(r.stdout, /Tests\s+22 passed \(22\)/, report(r))
  })

  test('@sinonjs/fake-timers install() after redis-guard loads', async () => {
    const r = await runChild([path.join(FIXTURES, 'sinon.cjs'), 'after-load'])
    assertAllOk(r, ['sinon-after-load'], [...LIB_CHECKS, 'done'])
    // install() fakes the `node:timers` module too, and process.nextTick (hence the Express
    // checks run with nextTick left real: Node's own HTTP stack needs it, see the control).
    const phase1 = r.markers.find((m) => m.check === 'fakes-on')
    assert.equal(phase1.faked.nodeTimersSetImmediate, true, report(r))
    assert.equal(phase1.faked.nextTick, true, report(r))
    const control = r.markers.filter((m) => m.check === 'http-control')
    assert.deepEqual(
      control.map((m) => m.nodeHttp),
      [false, true],
      `plain node:http under install() / without nextTick\n${report(r)}`,
    )
  })

  // install() before require('redis-guard'): install() has already replaced the functions of
  // `node:timers` when lib/timers.js takes them; it takes the originals from the fakes' clock.
  test('@sinonjs/fake-timers install() before redis-guard loads', async (t) => {
    const r = await runChild([path.join(FIXTURES, 'sinon.cjs'), 'before-load'])
    for (const m of r.markers) if (!m.ok) t.diagnostic(`${m.check}: ${m.error ?? `${m.failed} checks failed`}`)
    assertAllOk(r, ['sinon-before-load'], [...LIB_CHECKS, 'done'])
  })
})
