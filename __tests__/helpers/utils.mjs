/**
 * Shared test utilities: unique key prefixes, timing a call, running commands and node
 * snippets as child processes (to completion, or interactively with line-wise JSON output),
 * temporary directories and an HTTP listener for Express apps. Only Node's standard library.
 *
 * Every child process started here is SIGKILLed (after a SIGCONT, in case a test paused it)
 * when the Node process exits, and every temporary directory made here is removed then, so a
 * test that fails half-way leaves nothing behind.
 *
 * @module __tests__/helpers/utils
 */

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

/** The repository's root directory. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** The CommonJS entry point (`require(INDEX_JS)`). */
export const INDEX_JS = path.join(ROOT, 'index.js')
/** The ES module entry point, as a file: URL (`import ... from INDEX_MJS_URL`). */
export const INDEX_MJS_URL = pathToFileURL(path.join(ROOT, 'index.mjs')).href

// ---------------------------------------------------------------------------------------------
// Process-exit cleanup
// ---------------------------------------------------------------------------------------------

/** @type {Set<import('node:child_process').ChildProcess>} every live child spawned here */
const liveProcs = new Set()
/** @type {Set<string>} every temp dir made here and not removed yet */
const liveDirs = new Set()
let cleanupInstalled = false

/** Kill every registered child and remove every temp dir, synchronously. */
function cleanupSync() {
  for (const child of liveProcs) {
    if (child.exitCode !== null || child.signalCode !== null || !child.pid) continue
    try {
      process.kill(child.pid, 'SIGCONT')
    } catch {
      /* already gone */
    }
    try {
      process.kill(child.pid, 'SIGKILL')
    } catch {
      /* already gone */
    }
  }
  liveProcs.clear()
  for (const dir of liveDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true })
    } catch {
      /* best effort */
    }
  }
  liveDirs.clear()
}

function installCleanup() {
  if (cleanupInstalled) return
  cleanupInstalled = true
  process.on('exit', cleanupSync)
  // 'exit' does not fire when Node is killed by a signal (e.g. the test runner timing a file
  // out with SIGTERM, or Ctrl-C). Clean up, then re-raise the signal so the default behaviour
  // (terminate) still happens — unless somebody else also listens for it.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      cleanupSync()
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig)
    })
  }
}

/**
 * `spawn`, with the child registered for the kill at process exit (removed again on its exit).
 * @param {string} cmd
 * @param {string[]} args
 * @param {import('node:child_process').SpawnOptions} options
 */
export function spawnTracked(cmd, args, options) {
  installCleanup()
  const child = spawn(cmd, args, options)
  if (child.pid) liveProcs.add(child)
  const forget = () => liveProcs.delete(child)
  child.once('exit', forget)
  child.once('error', forget)
  return child
}

// ---------------------------------------------------------------------------------------------
// Keys and time
// ---------------------------------------------------------------------------------------------

let prefixSeq = 0

/**
 * A key prefix no other test (of this process or of a concurrent one) uses:
 * `rg-<pid>-<n>-<name>:`. Characters other than letters, digits and `_.:-` in `name` become `_`,
 * so a prefix never carries a cluster hash tag (`{...}`) or a SCAN glob character.
 * @param {string} [name]
 * @returns {string}
 */
export function uniquePrefix(name = 'k') {
  return `rg-${process.pid}-${++prefixSeq}-${String(name).replace(/[^A-Za-z0-9_.:-]/g, '_')}:`
}

/**
 * Time a call (a function, called here, or a promise already made). Never rejects.
 * @template T
 * @param {(() => Promise<T> | T) | Promise<T>} fnOrPromise
 * @returns {Promise<{ ms: number, value: T, error?: undefined } | { ms: number, error: unknown, value?: undefined }>}
 *   `ms` from `performance.now()`
 */
export async function timed(fnOrPromise) {
  const t0 = performance.now()
  try {
    const value = await (typeof fnOrPromise === 'function' ? fnOrPromise() : fnOrPromise)
    return { ms: performance.now() - t0, value }
  } catch (error) {
    return { ms: performance.now() - t0, error }
  }
}

// ---------------------------------------------------------------------------------------------
// Temporary files
// ---------------------------------------------------------------------------------------------

/**
 * A fresh directory `redis-guard-test-<tag>-*` under the system temp dir, removed by
 * `removeTempDir` or at process exit.
 * @param {string} [tag]
 */
export async function makeTempDir(tag = 'tmp') {
  installCleanup()
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `redis-guard-test-${tag}-`))
  liveDirs.add(dir)
  return dir
}

/** Remove a directory made by `makeTempDir` (never throws). */
export async function removeTempDir(dir) {
  if (!dir) return
  await fsp.rm(dir, { recursive: true, force: true }).catch(() => {})
  liveDirs.delete(dir)
}

let scriptDir
let scriptSeq = 0

/**
 * Write `source` to a file of its own in a process-wide temp dir (removed at exit); returns its
 * path. `type` picks the module system: `'module'` (`.mjs`, the default) or `'commonjs'` (`.cjs`).
 * Import redis-guard in it by absolute path: `INDEX_MJS_URL`, `INDEX_JS`.
 * @param {string} source
 * @param {{ name?: string, type?: 'module' | 'commonjs' }} [opts]
 */
export async function writeScript(source, { name = 'script', type = 'module' } = {}) {
  scriptDir ??= await makeTempDir('scripts')
  const file = path.join(scriptDir, `${name}-${++scriptSeq}.${type === 'commonjs' ? 'cjs' : 'mjs'}`)
  await fsp.writeFile(file, source)
  return file
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} RunResult
 * @property {number | null} code     exit code (null when killed by a signal)
 * @property {NodeJS.Signals | null} signal
 * @property {boolean} timedOut       killed (SIGKILL) because it overran `timeout`
 * @property {string} stdout
 * @property {string} stderr
 * @property {number} ms              from spawn to exit
 * @property {number} exitedAt        `Date.now()` when it exited
 */

/**
 * Run a command to completion and collect its output. Resolves (never rejects) on any exit,
 * also a non-zero one or a kill at `timeout` (then `timedOut` is true); rejects only when the
 * command cannot be started.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ cwd?: string, env?: NodeJS.ProcessEnv, input?: string, timeout?: number }} [opts]
 *   `env` replaces the environment (default: this process's); `input` is written to stdin
 * @returns {Promise<RunResult>}
 */
export function run(cmd, args, { cwd, env, input, timeout = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now()
    const child = spawnTracked(cmd, args, {
      cwd,
      env,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d
    })
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d
    })
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeout)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err.code === 'ENOENT' ? new Error(`${cmd} not found on PATH`, { cause: err }) : err)
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      const exitedAt = Date.now()
      resolve({ code, signal, timedOut, stdout, stderr, ms: exitedAt - t0, exitedAt })
    })
    if (input !== undefined) {
      child.stdin.on('error', () => {})
      child.stdin.end(input)
    }
  })
}

/**
 * `run()`, but rejects when the command exits non-zero, is killed or overruns `timeout` (the
 * error carries `stdout`, `stderr`, `code`, `signal` and `timedOut`), as `execFile` does.
 * @param {string} cmd
 * @param {string[]} args
 * @param {Parameters<typeof run>[2]} [opts]
 * @returns {Promise<RunResult>}
 */
export async function runOk(cmd, args, opts) {
  const r = await run(cmd, args, opts)
  if (r.code !== 0 || r.timedOut) {
    const how = r.timedOut ? `timed out after ${opts?.timeout ?? 30_000} ms` : `exited with ${r.code ?? r.signal}`
    throw Object.assign(new Error(`${cmd} ${args.join(' ')} ${how}:\n${r.stdout}${r.stderr}`), r)
  }
  return r
}

/**
 * The JSON after the first line starting with `marker` in `stdout` (undefined when none).
 * @param {string} stdout
 * @param {string} [marker]
 */
export function resultLine(stdout, marker = 'RESULT ') {
  const line = stdout.split('\n').find((l) => l.startsWith(marker))
  return line === undefined ? undefined : JSON.parse(line.slice(marker.length))
}

/**
 * Run a node snippet (or a script file) in a child process to completion.
 * `source` is written to a temp file (see `writeScript`; `type` picks ESM or CommonJS);
 * pass `{ file }` instead to run an existing script. Resolves `run()`'s result plus `result`:
 * the JSON of the first `RESULT {...}` line of stdout (undefined when there is none).
 * @param {string | { file: string }} source
 * @param {{ args?: string[], nodeArgs?: string[], type?: 'module' | 'commonjs', name?: string,
 *   cwd?: string, env?: NodeJS.ProcessEnv, input?: string, timeout?: number }} [opts]
 * @returns {Promise<RunResult & { result: any }>}
 */
export async function runNode(source, { args = [], nodeArgs = [], type, name = 'snippet', ...opts } = {}) {
  const file = typeof source === 'string' ? await writeScript(source, { name, type }) : source.file
  const r = await run(process.execPath, [...nodeArgs, file, ...args], opts)
  return { ...r, result: resultLine(r.stdout) }
}

/**
 * @typedef {object} NodeChild
 * @property {import('node:child_process').ChildProcess} child
 * @property {Promise<{ code: number | null, signal: NodeJS.Signals | null }>} exited
 * @property {object[]} lines      stdout lines not taken by `next()` yet: parsed JSON, or `{ text }`
 * @property {string} stdout       everything printed so far
 * @property {string} stderr
 * @property {(data: string) => void} write        write to the child's stdin
 * @property {(pred: (line: any) => boolean, timeout?: number) => Promise<any>} next
 *   the next line matching `pred` (removed from `lines`); rejects when the child exits first or
 *   after `timeout` ms (default 10 s)
 * @property {(timeout: number) => Promise<{ code: number | null, signal: NodeJS.Signals | null }>} waitExit
 *   wait for the child to exit by itself; rejects after `timeout` ms
 * @property {() => Promise<void>} stop   SIGCONT + SIGKILL if still running; resolves on exit
 */

/**
 * Start a node script (a file, or `{ source }` written to a temp file) as a child that runs
 * alongside the test: stdin is a pipe, stdout is read line by line (JSON lines parsed).
 * @param {string | { source: string, type?: 'module' | 'commonjs', name?: string }} script
 * @param {string[]} [args]
 * @param {{ nodeArgs?: string[], cwd?: string, env?: NodeJS.ProcessEnv }} [opts]
 * @returns {Promise<NodeChild>}
 */
export async function spawnNode(script, args = [], { nodeArgs = [], cwd, env } = {}) {
  const file = typeof script === 'string' ? script : await writeScript(script.source, script)
  const child = spawnTracked(process.execPath, [...nodeArgs, file, ...args], {
    cwd,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const lines = []
  let waiters = []
  const wake = () => {
    const w = waiters
    waiters = []
    for (const f of w) f()
  }
  let buf = ''
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d) => {
    stdout += d
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      try {
        lines.push(JSON.parse(line))
      } catch {
        lines.push({ text: line })
      }
    }
    wake()
  })
  child.stderr.setEncoding('utf8').on('data', (d) => {
    stderr += d
  })
  child.stdin.on('error', () => {})
  let exitInfo = null
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal }
      resolve(exitInfo)
      wake()
    })
  })
  return {
    child,
    exited,
    lines,
    get stdout() {
      return stdout
    },
    get stderr() {
      return stderr
    },
    write(data) {
      child.stdin.write(data)
    },
    async next(pred, timeout = 10_000) {
      const deadline = Date.now() + timeout
      for (;;) {
        const i = lines.findIndex(pred)
        if (i >= 0) return lines.splice(i, 1)[0]
        if (exitInfo)
          throw new Error(`child exited (${JSON.stringify(exitInfo)}) before the expected line; stderr:\n${stderr}`)
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`timed out waiting for a line from the child; stderr:\n${stderr}`)
        await new Promise((resolve) => {
          const t = setTimeout(resolve, left)
          waiters.push(() => {
            clearTimeout(t)
            resolve()
          })
        })
      }
    },
    async waitExit(timeout) {
      let t
      const r = await Promise.race([
        exited,
        new Promise((resolve) => {
          t = setTimeout(() => resolve(null), timeout)
        }),
      ])
      clearTimeout(t)
      if (!r) throw new Error(`child did not exit within ${timeout} ms; stderr:\n${stderr}`)
      return r
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, 'SIGCONT')
        } catch {
          /* gone */
        }
        try {
          process.kill(child.pid, 'SIGKILL')
        } catch {
          /* gone */
        }
      }
      await exited
    },
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/**
 * Listen with an Express (or any `listen()`-able) app on 127.0.0.1, a free port.
 * @returns {Promise<{ url: string, port: number, close: () => Promise<void> }>}
 */
export async function listen(app) {
  const server = await new Promise((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', (err) => (err ? reject(err) : resolve(s)))
    s.once('error', reject)
  })
  const { port } = server.address()
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

/**
 * Assert that `p` rejects with a redis-guard error (`name` RedisGuardError) of `code`; returns
 * the error.
 * @param {Promise<unknown>} p
 * @param {string} code
 * @param {string} [what]
 */
export async function rejectsCode(p, code, what) {
  let err
  await assert.rejects(p, (e) => {
    err = e
    assert.ok(e instanceof Error && e.name === 'RedisGuardError', `${what}: a RedisGuardError, got ${e}`)
    assert.equal(e.code, code, `${what ? what + ': ' : ''}expected ${code}, got ${e.code}: ${e.message}`)
    return true
  })
  return err
}
