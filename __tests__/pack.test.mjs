// The published artefact: `npm pack` the repo, install the tarball (with express@5) into a
// fresh app outside the repo, and use it from CommonJS and from ESM against a real Redis.
// The tarball ships the prebuilt addon: installing it never builds Rust.
// Run: node --test __tests__/pack.test.mjs   (needs the npm registry for express@5)

import assert from 'node:assert/strict'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { startRedis } from './helpers/redis.mjs'
import { resultLine, run as runCommand } from './helpers/utils.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const NODE_FILE = 'redis-guard.linux-x64-gnu.node'

/** PATH without the Rust toolchain: if the install tried to build the addon, it would fail. */
const PATH_NO_RUST = (process.env.PATH ?? '')
  .split(path.delimiter)
  .filter((p) => !/[\\/]\.cargo[\\/]|[\\/]\.rustup[\\/]/.test(p + path.sep))
  .join(path.delimiter)

/** Run a command; resolves { code, signal, stdout, stderr, ms } (kills it after `timeout`, default 60 s). */
const run = (cmd, args, { timeout = 60_000, ...opts } = {}) => runCommand(cmd, args, { timeout, ...opts })

function ok(r, what) {
  assert.equal(r.signal, null, `${what} was killed (timeout?)\n${r.stdout}\n${r.stderr}`)
  assert.equal(r.code, 0, `${what} exited with ${r.code}\n${r.stdout}\n${r.stderr}`)
  return r
}

/** The JSON printed after `RESULT ` by a child script. */
function result(r, what) {
  const out = resultLine(r.stdout)
  assert.ok(out, `${what}: no RESULT line\n${r.stdout}\n${r.stderr}`)
  return out
}

let tmp // everything this file creates lives here (outside the repo)
let server

before(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'redis-guard-test-pack-'))
  server = await startRedis()
})

after(async () => {
  await server?.stop()
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true })
})

test('npm pack ships the prebuilt addon, the JS layer and the types, and no Rust sources', async () => {
  const r = ok(await run('npm', ['pack', '--dry-run', '--json'], { cwd: ROOT }), 'npm pack --dry-run')
  const [info] = JSON.parse(r.stdout)
  const files = info.files.map((f) => f.path)
  // The JS layer is every .js file under lib/, whatever its layout (lib/ is private).
  const lib = fs
    .readdirSync(path.join(ROOT, 'lib'), { recursive: true })
    .filter((f) => f.endsWith('.js'))
    .map((f) => `lib/${f.split(path.sep).join('/')}`)
  assert.ok(lib.length > 0, 'lib/ has JS files')
  for (const f of [
    NODE_FILE,
    'binding.js',
    'binding.d.ts',
    'index.js',
    'index.mjs',
    'index.d.ts',
    ...lib,
    'package.json',
  ]) {
    assert.ok(files.includes(f), `${f} missing from the tarball: ${files.join(', ')}`)
  }
  for (const f of files) {
    assert.ok(!f.startsWith('src/'), `Rust source in the tarball: ${f}`)
    assert.ok(!f.startsWith('__tests__/') && !f.startsWith('target/') && !f.startsWith('node_modules/'), f)
    assert.ok(
      !['Cargo.toml', 'Cargo.lock', 'build.rs'].includes(f),
      `${f} in the tarball (an install would build Rust)`,
    )
  }
  const nodeEntry = info.files.find((f) => f.path === NODE_FILE)
  assert.ok(nodeEntry.size > 100_000, 'the addon is a real binary')
})

test(
  'install the tarball in a fresh app, use it from CommonJS and ESM against Redis',
  { timeout: 120_000 },
  async () => {
    // 1. Pack into a directory outside the repo.
    const packDir = path.join(tmp, 'pack')
    await fsp.mkdir(packDir)
    const packed = ok(await run('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: ROOT }), 'npm pack')
    const tarball = path.join(packDir, JSON.parse(packed.stdout)[0].filename)
    assert.ok(fs.existsSync(tarball), tarball)
    assert.ok(path.relative(ROOT, tarball).startsWith('..'), 'the tarball is outside the repo')

    // 2. A fresh app that installs it (and express@5) from the tarball, without Rust on PATH.
    const app = path.join(tmp, 'app')
    await fsp.mkdir(app)
    await fsp.writeFile(
      path.join(app, 'package.json'),
      JSON.stringify(
        {
          name: 'redis-guard-pack-smoke',
          version: '1.0.0',
          private: true,
          license: 'MIT',
        },
        null,
        2,
      ),
    )
    const env = { ...process.env, PATH: PATH_NO_RUST }
    delete env.REDIS_URL
    delete env.REDIS_GUARD_SKIP_BUILD
    delete env.REDIS_GUARD_FORCE_BUILD
    const install = ok(
      await run(
        'npm',
        ['install', tarball, 'express@5', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts'],
        { cwd: app, env, timeout: 100_000 },
      ),
      'npm install',
    )
    const installLog = install.stdout + install.stderr
    assert.doesNotMatch(installLog, /cargo|rustc|napi build|Compiling/i, `the install built Rust:\n${installLog}`)
    assert.doesNotMatch(installLog, /no prebuilt addon/i, installLog)

    const installed = path.join(app, 'node_modules', 'redis-guard')
    assert.ok(fs.existsSync(path.join(installed, NODE_FILE)), 'the addon is installed')
    assert.ok(fs.existsSync(path.join(installed, 'index.d.ts')), 'the types are installed')
    assert.ok(!fs.existsSync(path.join(installed, 'Cargo.toml')))
    assert.ok(!fs.existsSync(path.join(installed, 'src')))
    const pkg = JSON.parse(await fsp.readFile(path.join(app, 'package.json'), 'utf8'))
    assert.ok(pkg.dependencies['redis-guard'], 'recorded as a dependency')
    assert.match(pkg.dependencies.express, /\^?5\./)

    const runEnv = { PATH: PATH_NO_RUST, REDIS_URL: server.url }

    // 3. CommonJS, through `node -e` in the app (resolves node_modules/redis-guard, not the repo).
    const cjs = `
    const g = require('redis-guard')
    ;(async () => {
      const where = require.resolve('redis-guard')
      const before = g.isRedisAvailable()
      const ready = await g.getDefaultClient().ready(3000)
      const store = new g.RedisStore({ prefix: 'pack:cjs:' })
      store.init({ windowMs: 60000, limit: 10 })
      const r1 = await store.increment('k')
      const r2 = await store.increment('k')
      const lock = await g.acquireLock('pack-cjs', 5)
      const released = await g.releaseLock('pack-cjs')
      const health = await g.healthCheck()
      console.log('RESULT ' + JSON.stringify({ where, before, ready, available: g.isRedisAvailable(),
        r1, r2, resetIsDate: r2.resetTime instanceof Date, lock, released, health,
        exports: Object.keys(g).sort() }))
      await g.closeDefaultClient()
    })().catch((e) => { console.error(e); process.exit(2) })`
    const c = result(
      ok(await run(process.execPath, ['-e', cjs], { cwd: app, env: runEnv, timeout: 20_000 }), 'CJS'),
      'CJS',
    )
    assert.equal(c.where, path.join(await fsp.realpath(installed), 'index.js'))
    assert.equal(c.ready, true)
    assert.equal(c.available, true)
    assert.equal(c.r1.totalHits, 1)
    assert.equal(c.r2.totalHits, 2)
    assert.equal(c.resetIsDate, true)
    assert.equal(c.lock, true)
    assert.equal(c.released, true)
    assert.equal(c.health.status, 'healthy')
    for (const name of [
      'RedisClient',
      'RedisStore',
      'isRedisAvailable',
      'acquireLock',
      'releaseLock',
      'extendLock',
      'healthCheck',
      'healthHandler',
      'RedisGuardError',
    ]) {
      assert.ok(c.exports.includes(name), `CJS export ${name}`)
    }
    assert.equal(await server.cli('GET', 'pack:cjs:k'), '2', 'the counter is in Redis')

    // 4. ESM: named imports, plus the health handler mounted in the app's own express@5.
    const mjs = path.join(app, 'smoke.mjs')
    await fsp.writeFile(
      mjs,
      `
import { RedisClient, RedisStore, isRedisAvailable, closeDefaultClient } from 'redis-guard'
import * as guard from 'redis-guard'
import DefaultStore from 'redis-guard'
import express from 'express'
import { createRequire } from 'node:module'

const client = new RedisClient({ url: process.env.REDIS_URL, logger: false })
const ready = await client.ready(3000)
const store = new RedisStore({ client, prefix: 'pack:esm:' })
store.init({ windowMs: 60000, limit: 10 })
const r1 = await store.increment('k')
const app = express()
app.get('/health', client.healthHandler())
const http = await new Promise((resolve) => { const s = app.listen(0, '127.0.0.1', () => resolve(s)) })
const res = await fetch('http://127.0.0.1:' + http.address().port + '/health')
const body = await res.json()
http.close()
const expressVersion = createRequire(import.meta.url)('express/package.json').version
console.log('RESULT ' + JSON.stringify({ ready, available: client.isAvailable(), moduleAvailable: isRedisAvailable(),
  r1, resetIsDate: r1.resetTime instanceof Date, sameClass: guard.RedisClient === RedisClient && DefaultStore === RedisStore,
  healthStatus: res.status, health: body, expressVersion }))
await client.close()
await closeDefaultClient()
`,
    )
    const e = result(ok(await run(process.execPath, [mjs], { cwd: app, env: runEnv, timeout: 20_000 }), 'ESM'), 'ESM')
    assert.equal(e.ready, true)
    assert.equal(e.available, true)
    assert.equal(e.r1.totalHits, 1)
    assert.equal(e.resetIsDate, true)
    assert.equal(e.sameClass, true, 'default and named exports are the same objects')
    assert.equal(e.healthStatus, 200)
    assert.equal(e.health.status, 'healthy')
    assert.match(e.expressVersion, /^5\./)
    assert.equal(typeof e.moduleAvailable, 'boolean') // the default client (REDIS_URL) was just built
    assert.equal(await server.cli('GET', 'pack:esm:k'), '1')
  },
)
