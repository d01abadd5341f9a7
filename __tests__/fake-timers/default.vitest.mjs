// Vitest: vi.useFakeTimers() with its defaults in beforeEach; fake time is never advanced.
// redis-guard is loaded (through Node's require, not Vite's transform) before the fakes.
import timers from 'node:timers'
import { createRequire } from 'node:module'
import { afterEach, beforeAll, beforeEach, expect, test, vi } from 'vitest'

const require = createRequire(import.meta.url)
const sc = require('./scenario.cjs')

const ctx = sc.context('vitest-default', { setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout })
sc.load()

let client

beforeAll(() => {
  client = sc.newClient(ctx)
})
beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
})

test('fake timers are on', async () => {
  await sc.fakesOn(ctx)
  expect(sc.fakedApis()).toMatchObject({ setTimeout: true, setImmediate: true, Date: true })
  await sc.httpControl(ctx)
})
sc.registerLibTests(test, ctx, () => client)
test('close', () => sc.close(ctx, client))
