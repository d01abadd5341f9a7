'use strict'
// `npm install` hook. A packed or published redis-guard ships its prebuilt addon (or gets it from
// the per-platform package in npm/), so there is nothing to do. A git clone has only the Rust
// sources: build the addon with the napi CLI (needs a Rust toolchain).
const { existsSync } = require('node:fs')
const { join } = require('node:path')
const { spawnSync } = require('node:child_process')

const root = join(__dirname, '..')
/** Whether the addon loads (lib/native.js: binding.js or REDIS_GUARD_NATIVE_PATH); warns why not when `explain`. */
function loads(explain = false) {
  try {
    require(join(root, 'lib', 'native.js'))
    return true
  } catch (e) {
    if (explain) console.warn(e instanceof Error ? e.message : e)
    return false
  }
}

if (process.env.REDIS_GUARD_SKIP_BUILD === '1') process.exit(0)
if (!existsSync(join(root, 'Cargo.toml'))) {
  loads(true)
  process.exit(0)
}
if (existsSync(join(root, 'binding.js')) && loads() && process.env.REDIS_GUARD_FORCE_BUILD !== '1') process.exit(0)
const cli = join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
if (!existsSync(cli)) {
  console.warn('redis-guard: @napi-rs/cli is not installed; run `npm run build` after installing it')
  process.exit(0)
}
const r = spawnSync(
  process.execPath,
  [cli, 'build', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts'],
  {
    cwd: root,
    stdio: 'inherit',
  },
)
process.exit(r.status ?? 1)
