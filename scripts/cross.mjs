// `npm run cross [-- <platform>...] [--no-build]`: cross-compile the Linux targets on this (x64 Linux)
// machine and check each built addon here as far as this machine can:
//   - build: `napi build --target <triple> -x` (cargo-zigbuild with zig, as the release workflow
//     builds the musl targets) into target/cross/;
//   - size and links: each binary's size, its NEEDED libraries; a musl build must need musl only
//     (no glibc library, no GLIBC_ symbol version); a glibc build's newest GLIBC_ version;
//   - linux-arm64-gnu: load and smoke it under qemu-user with Debian's arm64 Node;
//   - musl: no musl Node is to be had here, so musl's own loader (Debian's musl) maps the addon
//     and resolves its symbols (linux-arm64-musl under qemu), and on x64 a musl-gcc program
//     dlopen()s it with Node-API stubbed;
//   - the pack test (__tests__/pack.test.mjs) for the cross targets: both tarballs installed into
//     a fresh app without Rust, and its CommonJS/ESM smoke against a real redis-server run under
//     qemu for linux-arm64-gnu (install only for musl).
// CI (.ci/run) does not run this: it needs a Rust target per platform, zig, qemu and an arm64
// root, and takes many minutes. What it needs it installs when it runs as root (rustup targets,
// `pip install ziglang`, `cargo install cargo-zigbuild`, `apt-get install qemu-user debootstrap
// musl musl-tools`); the arm64 root (debootstrap --foreign, unpacked without binfmt) is made in
// REDIS_GUARD_ARM64_ROOT (default /work/arm64-root, outside the repo) when it is missing.

import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const OUT = path.join(ROOT, 'target', 'cross')
const ARM64_ROOT = process.env.REDIS_GUARD_ARM64_ROOT || '/work/arm64-root'
const NAPI = path.join(ROOT, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')

/** The Linux targets this script builds: napi-rs platform name → Rust triple. */
const TARGETS = {
  'linux-arm64-gnu': 'aarch64-unknown-linux-gnu',
  'linux-x64-musl': 'x86_64-unknown-linux-musl',
  'linux-arm64-musl': 'aarch64-unknown-linux-musl',
}

const chosen = process.argv.slice(2).filter((a) => !a.startsWith('-'))
for (const p of chosen) if (!TARGETS[p]) fail(`unknown platform ${p}; one of ${Object.keys(TARGETS).join(', ')}`)
const platforms = chosen.length > 0 ? chosen : Object.keys(TARGETS)
/** `--no-build`: check the binaries already in target/cross (a re-run after changing only the checks). */
const noBuild = process.argv.includes('--no-build')

function fail(message) {
  console.error(`cross: ${message}`)
  process.exit(1)
}

/** Run a command with inherited output; fails the script when it fails. */
function sh(cmd, args, opts = {}) {
  console.log(`cross: $ ${[cmd, ...args].join(' ')}`)
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: ROOT, ...opts })
  if (r.status !== 0) fail(`${cmd} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`)
}

/** Run a command and return its stdout ('' when it cannot run). */
function out(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: ROOT, maxBuffer: 64 << 20, ...opts })
  return r.status === 0 ? r.stdout : ''
}

const has = (cmd, args = ['--version']) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0
const root = process.getuid?.() === 0

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

function tools() {
  if (!fs.existsSync(NAPI)) fail('run `npm install` first (it installs @napi-rs/cli)')
  const installed = out('rustup', ['target', 'list', '--installed']).split('\n')
  const missing = platforms.map((p) => TARGETS[p]).filter((t) => !installed.includes(t))
  if (missing.length > 0) sh('rustup', ['target', 'add', ...missing])
  // zig: on PATH, or PyPI's ziglang package (cargo-zigbuild finds `python3 -m ziglang` itself).
  if (!has('zig', ['version']) && !has('python3', ['-m', 'ziglang', 'version'])) {
    sh('python3', ['-m', 'pip', 'install', 'ziglang'])
  }
  if (!has('cargo-zigbuild')) sh('cargo', ['install', 'cargo-zigbuild', '--locked'])
  const apt = []
  if (!has('qemu-aarch64', ['--version'])) apt.push('qemu-user')
  if (!has('debootstrap', ['--version'])) apt.push('debootstrap')
  if (!fs.existsSync('/lib/ld-musl-x86_64.so.1')) apt.push('musl')
  if (!has('musl-gcc', ['--version'])) apt.push('musl-tools')
  if (apt.length > 0) {
    if (!root) fail(`needs ${apt.join(' ')}: sudo apt-get install -y ${apt.join(' ')}`)
    sh('apt-get', ['install', '-y', '-qq', ...apt], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  }
}

/** Debian's mirror, as this machine's apt sources name it. */
function debianMirror() {
  const files = ['/etc/apt/sources.list']
  for (const dir of ['/etc/apt/sources.list.d']) {
    if (fs.existsSync(dir)) for (const f of fs.readdirSync(dir)) files.push(path.join(dir, f))
  }
  for (const f of files) {
    if (!fs.existsSync(f)) continue
    const text = fs.readFileSync(f, 'utf8')
    const m = text.match(/^URIs:\s*(\S+\/debian)\/?\s*$/m) ?? text.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s/m)
    if (m) return m[1]
  }
  return 'http://deb.debian.org/debian'
}

/**
 * A small arm64 Debian root with nodejs and musl, for `qemu-aarch64 -L`. debootstrap's second
 * stage needs binfmt (to run arm64 binaries in a chroot), which this machine may lack, so the
 * first stage (`--foreign`) downloads the packages and they are unpacked with dpkg-deb: nothing
 * is configured, which running node and ld-musl does not need.
 */
function arm64Root() {
  const node = path.join(ARM64_ROOT, 'usr', 'bin', 'node')
  const musl = path.join(ARM64_ROOT, 'lib', 'ld-musl-aarch64.so.1')
  if (fs.existsSync(node) && fs.existsSync(musl)) return
  if (!root) fail(`no arm64 root at ${ARM64_ROOT}; run this as root to make it (debootstrap)`)
  fs.rmSync(ARM64_ROOT, { recursive: true, force: true })
  sh('debootstrap', [
    '--arch=arm64',
    '--variant=minbase',
    '--foreign',
    '--include=nodejs,musl',
    'bookworm',
    ARM64_ROOT,
    debianMirror(),
  ])
  console.log(`cross: unpacking the arm64 packages into ${ARM64_ROOT}`)
  const archives = path.join(ARM64_ROOT, 'var', 'cache', 'apt', 'archives')
  for (const deb of fs.readdirSync(archives).filter((f) => f.endsWith('.deb'))) {
    const r = spawnSync('dpkg-deb', ['-x', path.join(archives, deb), ARM64_ROOT], { stdio: 'inherit' })
    if (r.status !== 0) fail(`dpkg-deb -x ${deb} failed`)
  }
  if (!fs.existsSync(node)) fail(`${node} missing after unpacking the arm64 root`)
  if (!fs.existsSync(musl)) fail(`${musl} missing after unpacking the arm64 root`)
}

const qemuNode = () => ['qemu-aarch64', '-L', ARM64_ROOT, path.join(ARM64_ROOT, 'usr', 'bin', 'node')]

// ---------------------------------------------------------------------------------------------
// Build and inspect
// ---------------------------------------------------------------------------------------------

function build(platform) {
  const file = path.join(OUT, `redis-guard.${platform}.node`)
  if (noBuild) {
    if (!fs.existsSync(file)) fail(`--no-build: ${file} is missing`)
    return file
  }
  fs.mkdirSync(OUT, { recursive: true })
  sh('nice', [
    '-n',
    '10',
    process.execPath,
    NAPI,
    'build',
    '--platform',
    '--release',
    '--no-js',
    '--target',
    TARGETS[platform],
    '-x',
    '-o',
    OUT,
  ])
  if (!fs.existsSync(file)) fail(`${file} was not written`)
  return file
}

/** NEEDED libraries and GLIBC_ symbol versions of an ELF file (readelf works for any arch). */
function links(file) {
  const dynamic = out('readelf', ['-d', '-W', file])
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
  const versions = out('readelf', ['-V', '-W', file])
  const glibc = [...new Set([...versions.matchAll(/Name: (GLIBC_[0-9.]+)/g)].map((m) => m[1]))]
  const machine = out('readelf', ['-h', file])
    .match(/Machine:\s+(.+)/)?.[1]
    .trim()
  return { needed, glibc, machine }
}

const newest = (versions) =>
  versions
    .map((v) => v.slice('GLIBC_'.length))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
    .pop()

function checkLinks(platform, file) {
  const { needed, glibc, machine } = links(file)
  const wantMachine = platform.includes('arm64') ? 'AArch64' : 'Advanced Micro Devices X86-64'
  if (machine !== wantMachine) fail(`${platform}: machine ${machine}, expected ${wantMachine}`)
  if (platform.endsWith('-musl')) {
    // zig links musl builds against `libc.so` (musl's own name for itself; its loader maps any
    // `libc.*` to itself, which muslLoad checks); gcc's musl builds name `libc.musl-<arch>.so.1`.
    // glibc's is `libc.so.6`, which does not match.
    const foreign = needed.filter((n) => !/^libc\.musl-[a-z0-9_]+\.so\.1$|^libc\.so$|^libgcc_s\.so\.1$/.test(n))
    if (foreign.length > 0) fail(`${platform}: needs ${foreign.join(', ')}; a musl build must need musl only`)
    if (glibc.length > 0) fail(`${platform}: has glibc symbol versions ${glibc.join(', ')}`)
    // Initial-exec TLS (the linker's STATIC_TLS flag): musl's dlopen() refuses such a library.
    if (/\(FLAGS\).*STATIC_TLS/.test(out('readelf', ['-d', '-W', file]))) {
      fail(`${platform}: has the STATIC_TLS flag (initial-exec TLS); musl's dlopen() refuses it`)
    }
    console.log(
      `cross: ${platform}: links only against musl (NEEDED ${needed.join(', ')}; no GLIBC_ version; no STATIC_TLS)`,
    )
  } else {
    if (needed.some((n) => n.includes('musl'))) fail(`${platform}: needs musl: ${needed.join(', ')}`)
    console.log(`cross: ${platform}: NEEDED ${needed.join(', ')}; needs glibc ≥ ${newest(glibc)}`)
  }
  return { needed, glibc: newest(glibc) }
}

// ---------------------------------------------------------------------------------------------
// Run
// ---------------------------------------------------------------------------------------------

/** Load the arm64 glibc addon in Debian's arm64 Node under qemu and call into it (no Redis). */
function qemuLoad(file) {
  const script = `
    const b = require(${JSON.stringify(file)})
    const codes = b.errorCodes()
    const t = b.clockMs()
    console.log('cross: loaded under qemu:', process.arch, process.version, 'glibc', process.report.getReport().header.glibcVersionRuntime,
      '| errorCodes', codes.length, '| clockMs', typeof t, '| exports', Object.keys(b).length)
    if (!codes.includes('ERR_REDIS_GUARD_UNAVAILABLE') || typeof t !== 'number') process.exit(3)`
  const [cmd, ...args] = qemuNode()
  sh(cmd, [...args, '-e', script])
}

/**
 * Load a musl addon with musl's own dynamic loader, Debian's musl 1.2.3 (linux-arm64-musl under
 * qemu, from the arm64 root). No musl Node is to be had here, so:
 *   1. `ld-musl-<arch>.so.1 --list <addon>` (musl's ldd): maps the addon, finds its libraries and
 *      resolves every relocation; the only symbols it may miss are Node-API's (napi_*, which
 *      Node provides);
 *   2. on x64, a C program built with Debian's musl-gcc dlopen()s the addon with those Node-API
 *      functions stubbed, which also runs the addon's initialisers, and finds its
 *      napi_register_module_v1. (Zig's musl is 1.2.5, whose programs need symbols 1.2.3 lacks,
 *      and Debian has no aarch64 musl compiler, so arm64 gets step 1 only.)
 */
function muslLoad(platform, file) {
  const arm = platform.includes('arm64')
  const ldso = arm
    ? ['qemu-aarch64', '-L', ARM64_ROOT, path.join(ARM64_ROOT, 'lib', 'ld-musl-aarch64.so.1')]
    : ['/lib/ld-musl-x86_64.so.1']
  console.log(`cross: $ ${[...ldso, '--list', file].join(' ')}`)
  const r = spawnSync(ldso[0], [...ldso.slice(1), '--list', file], { encoding: 'utf8' })
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter(Boolean)
  const errors = lines.filter((l) => l.startsWith('Error'))
  const napi = errors.filter((l) => /: (napi_|node_api_)\w+: symbol not found$/.test(l))
  const other = errors.filter((l) => !napi.includes(l))
  if (other.length > 0) fail(`${platform}: musl's loader failed:\n${other.join('\n')}`)
  const libc = lines.find((l) => /^\s*libc\.\S* => \S*ld-musl-/.test(l))
  if (!libc) fail(`${platform}: musl's loader did not map libc to itself:\n${lines.join('\n')}`)
  console.log(
    `cross: ${platform}: musl's loader resolves every symbol but Node-API's (${napi.length} napi_*); ${libc.trim()}`,
  )
  if (arm) return
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `redis-guard-cross-${platform}-`))
  try {
    const syms = napi.map((l) => l.match(/: ((?:napi_|node_api_)\w+): symbol not found$/)[1])
    const source = [
      '#include <dlfcn.h>',
      '#include <stdio.h>',
      ...[...new Set(syms)].map((s) => `int ${s}(void) { return 0; }`),
      'int main(int argc, char **argv) {',
      '  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);',
      '  if (!h) { fprintf(stderr, "dlopen: %s\\n", dlerror()); return 1; }',
      '  void *reg = dlsym(h, "napi_register_module_v1");',
      '  printf("cross: dlopen() under musl: %s, initialisers run, napi_register_module_v1 %s\\n", argv[1], reg ? "found" : "missing");',
      '  return reg ? 0 : 2;',
      '}',
    ].join('\n')
    fs.writeFileSync(path.join(dir, 'load.c'), source)
    const exe = path.join(dir, 'load')
    sh('musl-gcc', ['-rdynamic', '-o', exe, path.join(dir, 'load.c')])
    sh(exe, [file])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

tools()
const built = {}
for (const platform of platforms) built[platform] = build(platform)
const report = []
for (const platform of platforms) {
  const file = built[platform]
  const { needed, glibc } = checkLinks(platform, file)
  report.push({ platform, file: path.relative(ROOT, file), bytes: fs.statSync(file).size, needed, glibc })
}
if (platforms.some((p) => p.includes('arm64'))) arm64Root()
if (built['linux-arm64-gnu']) qemuLoad(built['linux-arm64-gnu'])
for (const platform of platforms.filter((p) => p.endsWith('-musl'))) muslLoad(platform, built[platform])

// The pack test for every cross target: under qemu where a Node for it runs here.
const packTargets = platforms.map((platform) => ({
  platform,
  binary: built[platform],
  node: platform === 'linux-arm64-gnu' ? qemuNode() : null,
}))
sh(process.execPath, ['--test', path.join(ROOT, '__tests__', 'pack.test.mjs')], {
  env: { ...process.env, REDIS_GUARD_PACK_TARGETS: JSON.stringify(packTargets) },
})

const host = fs.readdirSync(ROOT).find((f) => /^redis-guard\..+\.node$/.test(f))
if (host)
  report.unshift({
    platform: `${host.slice(12, -5)} (npm run build)`,
    file: host,
    bytes: fs.statSync(path.join(ROOT, host)).size,
  })
console.log('\ncross: sizes (release profile: lto, codegen-units 1, strip symbols)')
for (const r of report) {
  console.log(
    `  ${r.platform.padEnd(32)} ${(r.bytes / 1024 / 1024).toFixed(2).padStart(6)} MiB  ${r.glibc ? `glibc ≥ ${r.glibc}` : r.needed ? `NEEDED ${r.needed.join(' ')}` : ''}`,
  )
}
