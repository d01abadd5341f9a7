// The loader (lib/native.js): where no addon loads, one error that names the platform, the
// package it looked for and the ways out; REDIS_GUARD_NATIVE_PATH loads an addon from elsewhere.
// The "installed without its platform package" case is a copy of what `npm pack` ships, laid
// out in a temp dir without any .node file; other platforms are faked in a child process.
// Run: node --test __tests__/native.test.mjs

import assert from 'node:assert/strict'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { after, before, test } from 'node:test'

import { ROOT, makeTempDir, removeTempDir, runNode } from './helpers/utils.mjs'

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
/** The addon `npm install` / `npm run build` wrote for this machine, e.g. redis-guard.linux-x64-gnu.node. */
const NODE_FILE = fs.readdirSync(ROOT).find((f) => /^redis-guard\..+\.node$/.test(f))
const HOST = NODE_FILE?.slice('redis-guard.'.length, -'.node'.length)

let tmp
let bare // the main package as installed from its tarball, with no platform package beside it

before(async () => {
  assert.ok(NODE_FILE, 'the addon is built (npm run build)')
  tmp = await makeTempDir('native')
  bare = path.join(tmp, 'node_modules', 'redis-guard')
  // The JS that `files` in package.json ships, without the addon.
  for (const entry of pkg.files) {
    if (entry.includes('*')) continue
    await fsp.cp(path.join(ROOT, entry), path.join(bare, entry), { recursive: true })
  }
  await fsp.copyFile(path.join(ROOT, 'package.json'), path.join(bare, 'package.json'))
  assert.ok(!fs.readdirSync(bare).some((f) => f.endsWith('.node')))
})

after(() => removeTempDir(tmp))

/** Require the package in a child (optionally with a preload that fakes the platform); RESULT is the error or the exports. */
async function load(dir, { env = {}, fake } = {}) {
  const nodeArgs = []
  if (fake) {
    const preload = path.join(tmp, `fake-${fake.platform}-${fake.arch}.cjs`)
    await fsp.writeFile(
      preload,
      `Object.defineProperty(process, 'platform', { value: ${JSON.stringify(fake.platform)} })
Object.defineProperty(process, 'arch', { value: ${JSON.stringify(fake.arch)} })\n`,
    )
    nodeArgs.push('--require', preload)
  }
  const source = `
try {
  const g = require(${JSON.stringify(dir)})
  console.log('RESULT ' + JSON.stringify({ loaded: true, exports: Object.keys(g).length, codes: Object.keys(g.codes).length }))
} catch (e) {
  console.log('RESULT ' + JSON.stringify({ loaded: false, code: e.code, message: e.message, cause: String(e.cause?.message ?? e.cause) }))
}`
  const r = await runNode(source, { type: 'commonjs', nodeArgs, env: { ...process.env, ...env }, timeout: 20_000 })
  assert.equal(r.code, 0, r.stdout + r.stderr)
  assert.ok(r.result, r.stdout + r.stderr)
  return r.result
}

test('installed without its platform package: one error naming the platform, the package and the ways out', async () => {
  const env = { REDIS_GUARD_NATIVE_PATH: '', NAPI_RS_NATIVE_LIBRARY_PATH: '' }
  const r = await load(bare, { env })
  assert.equal(r.loaded, false)
  assert.equal(r.code, 'ERR_REDIS_GUARD_NATIVE')
  assert.match(r.message, new RegExp(`no native addon for ${HOST} `))
  assert.match(r.message, new RegExp(`the package redis-guard-${HOST}\\n`))
  assert.ok(r.message.includes(`npm install redis-guard-${HOST}@${pkg.version}`), r.message)
  assert.match(r.message, /Build it from source with Rust/)
  assert.match(r.message, /napi build --platform --release/)
  assert.ok(r.message.includes(`REDIS_GUARD_NATIVE_PATH=/path/to/redis-guard.${HOST}.node`), r.message)
  assert.match(r.message, new RegExp(`Node ${process.versions.node.replace(/\./g, '\\.')}`))
  // The generated loader's own failure is kept as the cause, not printed as a second error.
  assert.match(r.cause, /Cannot find native binding/)
  assert.equal(r.message.match(/redis-guard: /g).length, 1, 'one message')
})

test('REDIS_GUARD_NATIVE_PATH loads the addon from elsewhere', async () => {
  const r = await load(bare, { env: { REDIS_GUARD_NATIVE_PATH: path.join(ROOT, NODE_FILE) } })
  assert.equal(r.loaded, true, JSON.stringify(r))
  assert.ok(r.exports > 10)
  assert.ok(r.codes > 3, 'the error codes come from the addon')
})

test('REDIS_GUARD_NATIVE_PATH pointing at nothing: an error naming the path, not a silent fallback', async () => {
  const missing = path.join(tmp, 'nowhere', `redis-guard.${HOST}.node`)
  // Against the repo, where the built addon would load: the variable wins and its failure is reported.
  const r = await load(ROOT, { env: { REDIS_GUARD_NATIVE_PATH: missing } })
  assert.equal(r.loaded, false)
  assert.equal(r.code, 'ERR_REDIS_GUARD_NATIVE')
  assert.ok(r.message.includes(`REDIS_GUARD_NATIVE_PATH=${missing} did not load`), r.message)
  assert.match(r.message, /Unset it/)
})

test('a published platform without its package (faked darwin arm64): names redis-guard-darwin-arm64', async () => {
  const r = await load(bare, { fake: { platform: 'darwin', arch: 'arm64' } })
  assert.equal(r.loaded, false)
  assert.match(r.message, /no native addon for darwin-arm64 \(darwin arm64,/)
  assert.ok(r.message.includes(`npm install redis-guard-darwin-arm64@${pkg.version}`), r.message)
  assert.ok(r.message.includes('REDIS_GUARD_NATIVE_PATH=/path/to/redis-guard.darwin-arm64.node'), r.message)
})

test('a platform with no published binary (faked freebsd x64): says so and gives the build from source', async () => {
  const r = await load(bare, { fake: { platform: 'freebsd', arch: 'x64' } })
  assert.equal(r.loaded, false)
  assert.equal(r.code, 'ERR_REDIS_GUARD_NATIVE')
  assert.match(r.message, /no native addon for freebsd-x64 /)
  assert.match(
    r.message,
    /redis-guard publishes no binary for\s+this platform \(it does for linux-x64-gnu, linux-x64-musl,/,
  )
  assert.doesNotMatch(r.message, /npm install redis-guard-freebsd/)
  assert.match(r.message, /Build it from source with Rust/)
})

test('a platform package that is there but does not load: the message says what failed', async () => {
  const dir = path.join(tmp, 'broken', 'node_modules')
  await fsp.cp(bare, path.join(dir, 'redis-guard'), { recursive: true })
  const sub = path.join(dir, `redis-guard-${HOST}`)
  await fsp.mkdir(sub, { recursive: true })
  const file = `redis-guard.${HOST}.node`
  await fsp.writeFile(path.join(sub, file), 'not an ELF file') // what a truncated download leaves
  await fsp.writeFile(
    path.join(sub, 'package.json'),
    JSON.stringify({ name: `redis-guard-${HOST}`, version: pkg.version, main: file }),
  )
  const r = await load(path.join(dir, 'redis-guard'))
  assert.equal(r.loaded, false)
  assert.equal(r.code, 'ERR_REDIS_GUARD_NATIVE')
  assert.match(r.message, /What failed to load:\n {2}\S+/)
  assert.ok(r.message.includes(path.join(sub, file)), r.message)
  assert.doesNotMatch(r.message, /What failed to load:[^]*Cannot find module/, 'only the real failure')
})
