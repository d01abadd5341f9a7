// The published artefacts: `npm pack` the main package and a platform package (npm/<platform>/
// with the built addon in it, as `napi artifacts` lays it out for the release), install both
// (with express@5) into a fresh app outside the repo with no Rust on PATH, and use them from
// CommonJS and from ESM against a real Redis. The main tarball carries no addon: the platform
// package does, and installing never builds Rust.
// Run: node --test __tests__/pack.test.mjs   (needs the npm registry for express@5)
//
// By default the target is this machine's (the addon `npm install` / `npm run build` wrote).
// `npm run cross` (scripts/cross.mjs) runs this file for the cross-built targets with
// REDIS_GUARD_PACK_TARGETS, a JSON list of { platform, binary, node }: `node` is the command
// that runs that platform's Node (e.g. qemu-aarch64 -L <root> <root>/usr/bin/node), or null
// where no Node for it can run here (musl): then the install is checked, the smoke is skipped.

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
const HOST_NODE_FILE = fs.readdirSync(ROOT).find((f) => /^redis-guard\..+\.node$/.test(f))

/**
 * @typedef {object} Target
 * @property {string} platform   napi-rs's name: linux-x64-gnu, linux-arm64-musl, …
 * @property {string} binary     the built addon
 * @property {string[] | null} node  the command that runs Node on that platform (null: none here)
 */
/** @type {Target[]} */
const TARGETS = process.env.REDIS_GUARD_PACK_TARGETS
  ? JSON.parse(process.env.REDIS_GUARD_PACK_TARGETS)
  : [
      {
        platform: HOST_NODE_FILE?.slice('redis-guard.'.length, -'.node'.length),
        binary: HOST_NODE_FILE && path.join(ROOT, HOST_NODE_FILE),
        node: [process.execPath],
      },
    ]
/** Seconds are slower under qemu: scale the child timeouts for an emulated Node. */
const slow = (t) => (t.node && t.node[0] !== process.execPath ? 6 : 1)

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

test('npm pack ships the JS layer and the types, and neither an addon nor Rust sources', async () => {
  const r = ok(await run('npm', ['pack', '--dry-run', '--json'], { cwd: ROOT }), 'npm pack --dry-run')
  const [info] = JSON.parse(r.stdout)
  const files = info.files.map((f) => f.path)
  // The JS layer is every .js file under lib/, whatever its layout (lib/ is private).
  const lib = fs
    .readdirSync(path.join(ROOT, 'lib'), { recursive: true })
    .filter((f) => f.endsWith('.js'))
    .map((f) => `lib/${f.split(path.sep).join('/')}`)
  assert.ok(lib.length > 0, 'lib/ has JS files')
  for (const f of ['binding.js', 'binding.d.ts', 'index.js', 'index.mjs', 'index.d.ts', ...lib, 'package.json']) {
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
  const addons = files.filter((f) => f.endsWith('.node'))
  assert.deepEqual(addons, [], 'the main package carries no platform binary (the npm/ packages do)')
  // Every platform with a published binary has its npm/ package, named as binding.js requires it.
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  const loader = fs.readFileSync(path.join(ROOT, 'binding.js'), 'utf8')
  for (const dir of fs.readdirSync(path.join(ROOT, 'npm'))) {
    const sub = JSON.parse(fs.readFileSync(path.join(ROOT, 'npm', dir, 'package.json'), 'utf8'))
    assert.equal(sub.name, `redis-guard-${dir}`)
    assert.equal(sub.version, pkg.version, `${sub.name} has the main package's version`)
    assert.deepEqual(sub.files, [`redis-guard.${dir}.node`])
    assert.ok(loader.includes(`require('${sub.name}')`), `binding.js loads ${sub.name}`)
  }
  assert.equal(fs.readdirSync(path.join(ROOT, 'npm')).length, pkg.napi.targets.length, 'one npm/ folder per target')
})

for (const target of TARGETS) {
  test(
    `${target.platform}: install the main and platform tarballs in a fresh app, use them from CommonJS and ESM against Redis`,
    { timeout: 120_000 * slow(target) },
    async (t) => {
      assert.ok(
        target.platform && target.binary && fs.existsSync(target.binary),
        `the addon is built: ${target.binary}`,
      )
      const NODE_FILE = `redis-guard.${target.platform}.node`
      const nodeCmd = target.node
      // 1. Pack both into a directory outside the repo: the main package, and npm/<platform> with
      //    the addon copied in (what `napi artifacts` does in the release workflow).
      const packDir = path.join(tmp, `pack-${target.platform}`)
      await fsp.mkdir(packDir)
      const packed = ok(await run('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: ROOT }), 'npm pack')
      const tarball = path.join(packDir, JSON.parse(packed.stdout)[0].filename)
      assert.ok(fs.existsSync(tarball), tarball)
      assert.ok(path.relative(ROOT, tarball).startsWith('..'), 'the tarball is outside the repo')
      const platformDir = path.join(tmp, `npm-${target.platform}`)
      await fsp.cp(path.join(ROOT, 'npm', target.platform), platformDir, { recursive: true })
      await fsp.copyFile(target.binary, path.join(platformDir, NODE_FILE))
      const packedPlatform = ok(
        await run('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: platformDir }),
        'npm pack (platform package)',
      )
      const [platformInfo] = JSON.parse(packedPlatform.stdout)
      const platformTarball = path.join(packDir, platformInfo.filename)
      assert.deepEqual(platformInfo.files.map((f) => f.path).sort(), [NODE_FILE, 'README.md', 'package.json'].sort())
      const size = fs.statSync(target.binary).size
      assert.ok(size > 100_000, 'the addon is a real binary')
      t.diagnostic(
        `${NODE_FILE}: ${(size / 1024 / 1024).toFixed(2)} MiB; platform tarball ${(platformInfo.size / 1024 / 1024).toFixed(2)} MiB; ` +
          `main tarball ${(JSON.parse(packed.stdout)[0].size / 1024).toFixed(0)} KiB`,
      )

      // 2. A fresh app that installs it (and express@5) from the tarball, without Rust on PATH.
      const app = path.join(tmp, `app-${target.platform}`)
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
      // A platform package for another machine: its package.json restricts os/cpu/libc (as on
      // the registry), so npm refuses it here (EBADPLATFORM) unless forced; its machine takes it.
      const cross = nodeCmd?.[0] !== process.execPath
      const platformFlags = cross ? ['--force'] : []
      const install = ok(
        await run(
          'npm',
          [
            'install',
            tarball,
            platformTarball,
            'express@5',
            '--no-audit',
            '--no-fund',
            '--prefer-offline',
            '--foreground-scripts',
            ...platformFlags,
          ],
          { cwd: app, env, timeout: 100_000 * (cross ? 2 : 1) },
        ),
        'npm install',
      )
      const installLog = install.stdout + install.stderr
      assert.doesNotMatch(
        installLog,
        /^\s*Compiling |Finished `release`|cargo build|error: could not compile/m,
        `the install built Rust:\n${installLog}`,
      )
      // The install script runs under this machine's Node: for a cross target it cannot load the
      // other platform's addon and says so (once); for this machine's target it is silent.
      if (!cross) assert.doesNotMatch(installLog, /no native addon/i, installLog)

      const installed = path.join(app, 'node_modules', 'redis-guard')
      const installedPlatform = path.join(app, 'node_modules', `redis-guard-${target.platform}`)
      assert.ok(fs.existsSync(path.join(installedPlatform, NODE_FILE)), 'the addon is installed in its package')
      assert.deepEqual(
        fs.readdirSync(installed).filter((f) => f.endsWith('.node')),
        [],
        'no addon in the main package',
      )
      assert.ok(fs.existsSync(path.join(installed, 'index.d.ts')), 'the types are installed')
      assert.ok(!fs.existsSync(path.join(installed, 'Cargo.toml')))
      assert.ok(!fs.existsSync(path.join(installed, 'src')))
      const pkg = JSON.parse(await fsp.readFile(path.join(app, 'package.json'), 'utf8'))
      assert.ok(pkg.dependencies['redis-guard'], 'recorded as a dependency')
      assert.match(pkg.dependencies.express, /\^?5\./)

      if (!nodeCmd) {
        t.diagnostic(`no Node for ${target.platform} runs here: installed and laid out, smoke not run`)
        return
      }
      const [node, ...nodeArgs] = nodeCmd
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
        ok(await run(node, [...nodeArgs, '-e', cjs], { cwd: app, env: runEnv, timeout: 20_000 * slow(target) }), 'CJS'),
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
      const e = result(
        ok(await run(node, [...nodeArgs, mjs], { cwd: app, env: runEnv, timeout: 20_000 * slow(target) }), 'ESM'),
        'ESM',
      )
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
}
