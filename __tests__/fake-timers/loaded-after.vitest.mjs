// Vitest: vi.useFakeTimers() (defaults) before redis-guard loads, kept on for the whole file;
// fake time is never advanced.
import timers from 'node:timers'
import { createRequire } from 'node:module'
import { expect, test, vi } from 'vitest'

const require = createRequire(import.meta.url)
const sc = require('./scenario.cjs')

const ctx = sc.context('vitest-loaded-after', { setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout })
vi.useFakeTimers()
const fakedAtLoad = sc.fakedApis()
sc.load()

let client

test('fake timers were on before redis-guard loaded', async () => {
  expect(fakedAtLoad).toMatchObject({ setTimeout: true, setImmediate: true, Date: true })
  await sc.fakesOn(ctx)
  client = sc.newClient(ctx)
})
sc.registerLibTests(test, ctx, () => client)
test('close', async () => {
  await sc.close(ctx, client)
  vi.useRealTimers()
})
