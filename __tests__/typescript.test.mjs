// How applications load redis-guard: TypeScript (express-rate-limit's own types accept
// RedisStore; index.d.ts matches the runtime), ES modules and CommonJS.
// Run: node --test __tests__/typescript.test.mjs

import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'

import { startRedis } from './helpers/redis.mjs'
import { runOk, uniquePrefix } from './helpers/utils.mjs'
import * as esm from '../index.mjs'
import esmDefault from '../index.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const require = createRequire(import.meta.url)

test('a TypeScript consumer type-checks (tsc --noEmit, strict, NodeNext, express-rate-limit types)', async () => {
  // `npx tsc` without npx: the repo's own TypeScript, no registry access.
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const project = path.join(ROOT, '__tests__', 'types', 'tsconfig.json')
  try {
    await runOk(process.execPath, [tsc, '--noEmit', '-p', project], { cwd: ROOT, timeout: 120_000 })
  } catch (e) {
    assert.fail(`tsc reported errors:\n${e.stdout || ''}${e.stderr || ''}${e.stdout || e.stderr ? '' : e.message}`)
  }
})

test('ESM and CommonJS entries export the same objects', async () => {
  const cjs = require('../index.js')
  const names = [
    'RedisClient',
    'RedisStore',
    'Lease',
    'RedisGuardError',
    'codes',
    'getDefaultClient',
    'closeDefaultClient',
    'isRedisAvailable',
    'healthCheck',
    'healthHandler',
    'acquireLock',
    'releaseLock',
    'extendLock',
    'Cache',
    'cacheGet',
    'cacheSet',
    'cacheDelete',
    'cacheDeletePattern',
  ]
  for (const n of names) {
    assert.ok(cjs[n] !== undefined, `CommonJS exports ${n}`)
    assert.equal(esm[n], cjs[n], `ESM ${n} is the CommonJS one`)
  }
  // The default export is RedisStore, as rate-limit-redis's is (`import RedisStore from ...`).
  assert.equal(esmDefault, cjs.RedisStore)
  assert.equal(cjs.default, cjs.RedisStore)
  // The package name resolves through package.json "exports" (self-reference) in both systems.
  assert.equal(require('redis-guard').RedisStore, cjs.RedisStore)
  const byName = await import('redis-guard')
  assert.equal(byName.RedisStore, cjs.RedisStore)
  assert.equal(byName.default, cjs.RedisStore)
})

test('ESM import and CommonJS require both count in Redis, from fresh processes', async () => {
  const server = await startRedis()
  try {
    const prefix = uniquePrefix('ts')
    const indexMjs = pathToFileURL(path.join(ROOT, 'index.mjs')).href
    const indexJs = path.join(ROOT, 'index.js')
    const body = `
      const client = new RedisClient({ url: process.env.URL, logger: false });
      const store = new RedisStore({ client, prefix: ${JSON.stringify(prefix)} });
      store.init({ windowMs: 60000, limit: 10 });
      const r = await store.increment('k');
      if (!(r.resetTime instanceof Date)) throw new Error('resetTime is not a Date');
      console.log(r.totalHits);
      await client.close();`
    const env = { ...process.env, URL: server.url }
    const esmRun = await runOk(
      process.execPath,
      ['--input-type=module', '-e', `import { RedisStore, RedisClient } from ${JSON.stringify(indexMjs)};\n${body}`],
      { env, timeout: 20_000 },
    )
    const cjsRun = await runOk(
      process.execPath,
      [
        '-e',
        `const { RedisStore, RedisClient } = require(${JSON.stringify(indexJs)});\n(async () => {${body}})().catch((e) => { console.error(e); process.exit(1); });`,
      ],
      { env, timeout: 20_000 },
    )
    assert.deepEqual([esmRun.stdout.trim(), cjsRun.stdout.trim()].sort(), ['1', '2'])
    assert.equal(await server.cli('GET', `${prefix}k`), '2')
  } finally {
    await server.stop()
  }
})
