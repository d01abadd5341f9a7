/**
 * Test harness: starts REAL `redis-server` processes (standalone, TLS, ACL,
 * cluster, sentinel) and a TCP fault-injection proxy for the redis-guard tests.
 *
 * Only Node's standard library is used. Requirements on the machine:
 * `redis-server`, `redis-cli` (Redis 7.x) and `openssl` on PATH.
 *
 * Safety rules honoured by this module:
 *  - it never connects to, or stops, a Redis it did not start itself;
 *  - it never uses port 6379 (nor 16379);
 *  - every child process it spawns is kept in a registry and is SIGKILLed
 *    (after a SIGCONT, in case it was paused) synchronously when the Node
 *    process exits, so no redis-server outlives the test process;
 *  - every temporary directory lives under `os.tmpdir()` with the prefix
 *    `redis-guard-test-` and is removed on stop() (or at process exit).
 *
 * Server processes are `unref()`ed: a test that forgets to stop a server does
 * not hang the test runner; the server is simply killed when Node exits.
 *
 * @module __tests__/helpers/redis
 */

import fs from 'node:fs'
import fsp from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import { setTimeout as sleep } from 'node:timers/promises'

import { makeTempDir as makeDir, removeTempDir as removeDir, run as runCommand, spawnTracked } from './utils.mjs'

const HOST = '127.0.0.1'
/** A fresh temp dir `redis-guard-test-<extra>*` (utils.mjs removes it at exit). */
const makeTempDir = (extra = '') => makeDir(extra ? extra.replace(/-$/, '') : 'redis')
/** Ports we must never hand out (a developer's own Redis, its cluster bus). */
const FORBIDDEN_PORTS = new Set([6379, 16379, 26379])

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/**
 * Poll `fn` until it returns a truthy value (which is returned) or the
 * timeout elapses (then rejects with the last error / a timeout error).
 * Errors thrown by `fn` count as "not yet".
 *
 * @template T
 * @param {() => Promise<T> | T} fn
 * @param {{ timeout?: number, interval?: number, what?: string }} [opts]
 * @returns {Promise<T>}
 */
export async function waitFor(fn, { timeout = 10_000, interval = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  let lastErr
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      lastErr = err
    }
    if (Date.now() >= deadline) {
      const e = new Error(
        `timed out after ${timeout} ms waiting for ${what}` + (lastErr ? ` (last error: ${lastErr.message})` : ''),
      )
      e.cause = lastErr
      throw e
    }
    await sleep(interval)
  }
}

/**
 * Run a command, collect its output. Resolves `{ code, signal, stdout, stderr }` (never rejects
 * on a non-zero exit; rejects on spawn failure or timeout).
 */
async function run(cmd, args, { timeout = 10_000, input, cwd } = {}) {
  const r = await runCommand(cmd, args, { timeout, input, cwd })
  if (r.timedOut) {
    throw Object.assign(new Error(`${cmd} ${args.join(' ')} timed out after ${timeout} ms`), r)
  }
  return r
}

/** Like run(), but rejects on non-zero exit and returns trimmed stdout. */
async function runOk(cmd, args, opts) {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) {
    const e = new Error(
      `${cmd} ${args.join(' ')} exited with ${r.code ?? r.signal}: ` + `${(r.stderr || r.stdout).trim()}`,
    )
    Object.assign(e, r)
    throw e
  }
  return r.stdout.trim()
}

/** Last `n` lines of a file ('' if missing) — used in startup error messages. */
function tail(file, n = 15) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n')
  } catch {
    return ''
  }
}

// ---------------------------------------------------------------------------
// freePort
// ---------------------------------------------------------------------------

/** Ports handed out by freePort() in this process (avoid double hand-out races). */
const handedOut = new Set()

/** Try to listen on 127.0.0.1:port; resolves the bound port or null. */
function probeListen(port) {
  return new Promise((resolve) => {
    const srv = net.createServer()
    srv.unref()
    srv.once('error', () => resolve(null))
    srv.listen({ host: HOST, port, exclusive: true }, () => {
      const bound = srv.address().port
      srv.close(() => resolve(bound))
    })
  })
}

/**
 * Find a free loopback TCP port (listen on 127.0.0.1:0, read it, close).
 * A port is never handed out twice by the same process, and 6379 is never
 * returned.
 *
 * @param {{ bus?: boolean }} [opts] `bus: true` additionally guarantees that
 *   `port + 10000` (the Redis Cluster bus port) is free and <= 65535.
 * @returns {Promise<number>}
 */
export async function freePort({ bus = false } = {}) {
  for (let attempt = 0; attempt < 500; attempt++) {
    const port = await probeListen(0)
    if (!port || FORBIDDEN_PORTS.has(port) || handedOut.has(port)) continue
    if (bus) {
      const busPort = port + 10_000
      if (busPort > 65_535 || FORBIDDEN_PORTS.has(busPort) || handedOut.has(busPort)) continue
      if (!(await probeListen(busPort))) continue
      handedOut.add(busPort)
    }
    handedOut.add(port)
    return port
  }
  throw new Error(`freePort: could not find a free port${bus ? ' (with free bus port)' : ''}`)
}

// ---------------------------------------------------------------------------
// makeCerts
// ---------------------------------------------------------------------------

/**
 * @typedef {object} Certs  All fields are absolute paths of PEM files.
 * @property {string} dir        directory holding the files
 * @property {string} ca         CA certificate (trust anchor for server & client certs)
 * @property {string} caKey      CA private key
 * @property {string} serverCert server leaf, SAN IP:127.0.0.1, DNS:localhost, EKU serverAuth(+clientAuth)
 * @property {string} serverKey  server private key (PKCS#8)
 * @property {string} clientCert client leaf (CN=redis-guard-client), EKU clientAuth
 * @property {string} clientKey  client private key (PKCS#8)
 * @property {string} wrongCa    an unrelated CA certificate (must NOT validate the server)
 */

/** @type {Map<string, Promise<Certs>>} */
const certCache = new Map()

const REQ_CNF = `[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`
const SERVER_EXT = `basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
`
const CLIENT_EXT = `basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:redis-guard-client
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
`
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
const DAYS = '3'

async function generateCerts(dir) {
  const f = (name) => path.join(dir, name)
  await fsp.writeFile(f('req.cnf'), REQ_CNF)
  await fsp.writeFile(f('server.ext'), SERVER_EXT)
  await fsp.writeFile(f('client.ext'), CLIENT_EXT)
  const ossl = (...args) => runOk('openssl', args, { cwd: dir, timeout: 20_000 })

  const makeCa = (key, crt, cn) =>
    ossl(
      'req',
      '-x509',
      '-new',
      ...EC_KEY,
      '-keyout',
      f(key),
      '-out',
      f(crt),
      '-days',
      DAYS,
      '-sha256',
      '-subj',
      `/CN=${cn}`,
      '-config',
      f('req.cnf'),
      '-extensions',
      'v3_ca',
    )

  const makeLeaf = async (name, cn, ext) => {
    await ossl(
      'req',
      '-new',
      ...EC_KEY,
      '-keyout',
      f(`${name}.key`),
      '-out',
      f(`${name}.csr`),
      '-subj',
      `/CN=${cn}`,
      '-config',
      f('req.cnf'),
    )
    await ossl(
      'x509',
      '-req',
      '-in',
      f(`${name}.csr`),
      '-CA',
      f('ca.crt'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-CAserial',
      f(`${name}.srl`),
      '-out',
      f(`${name}.crt`),
      '-days',
      DAYS,
      '-sha256',
      '-extfile',
      f(ext),
    )
  }

  await Promise.all([
    makeCa('ca.key', 'ca.crt', 'redis-guard test CA'),
    makeCa('wrong-ca.key', 'wrong-ca.crt', 'redis-guard WRONG test CA'),
  ])
  await Promise.all([
    makeLeaf('server', 'localhost', 'server.ext'),
    makeLeaf('client', 'redis-guard-client', 'client.ext'),
  ])
  // Keys must be readable by redis-server (same user here) — 0600 is fine.
  return {
    dir,
    ca: f('ca.crt'),
    caKey: f('ca.key'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
    wrongCa: f('wrong-ca.crt'),
  }
}

/**
 * Generate (once per process and directory) a test PKI with `openssl`:
 * a CA, a server certificate signed by it (SAN `IP:127.0.0.1, DNS:localhost`),
 * a client certificate signed by it and a second, unrelated CA (`wrongCa`).
 * Keys are EC prime256v1 (PKCS#8 PEM), certificates are X.509 v3, SHA-256,
 * valid for 3 days, with the extensions rustls/webpki require.
 *
 * @param {string} [dir] where to write the files (created if needed; the
 *   harness never deletes a caller-supplied dir). When omitted, a
 *   process-wide temp dir `redis-guard-test-certs-*` is used (removed at
 *   process exit).
 *   Repeated calls with the same `dir` (or none) return the cached set.
 * @returns {Promise<Certs>}
 */
export function makeCerts(dir) {
  const key = dir ? path.resolve(dir) : ''
  let p = certCache.get(key)
  if (!p) {
    p = (async () => {
      let target = key
      if (target) await fsp.mkdir(target, { recursive: true })
      else target = await makeTempDir('certs-')
      return generateCerts(target)
    })()
    p.catch(() => certCache.delete(key))
    certCache.set(key, p)
  }
  return p
}

// ---------------------------------------------------------------------------
// redis-server processes
// ---------------------------------------------------------------------------

/**
 * @typedef {object} AclUser
 * @property {string} name
 * @property {string} [password]  added as `>password` to the rules
 * @property {string} [rules]     ACL rules, e.g. 'on ~rl:* +@all' (default 'on ~* &* +@all')
 */

/**
 * @typedef {object} StartOptions
 * @property {string} [password]  `requirepass` (also set as `masterauth`)
 * @property {AclUser[]} [users]  extra ACL users (passed as `--user` directives)
 * @property {boolean | { authClients?: boolean | 'optional' }} [tls]
 *   TLS-only server (`--port 0 --tls-port P`). `authClients`: false/undefined
 *   -> `tls-auth-clients no`, 'optional' -> `optional`, true -> `yes`.
 * @property {string[]} [args]    extra redis-server arguments (appended last, so they win)
 * @property {number} [port]      fixed port (e.g. to reuse one); default: freePort()
 */

/**
 * @typedef {object} CliOptions  Optional LAST argument of `cli(...)`.
 * @property {string} [user]      authenticate as this ACL user (`--user`) ...
 * @property {string} [password]  ... with this password (`--pass`); or, without
 *   `user`, override the default-user password (`-a`)
 * @property {boolean} [auth=true] false: send no credentials at all
 * @property {boolean} [tls=true]  false: connect WITHOUT TLS even if the server is TLS
 * @property {string} [cacert]     override the CA file used by redis-cli
 * @property {boolean} [clientCert=true] false: do not present the client certificate
 * @property {number} [timeout=10000] ms before redis-cli is killed and cli() rejects
 * @property {string} [input]      data written to redis-cli's stdin (for `-x`)
 */

let serverSeq = 0

/**
 * A redis-server (or sentinel) process started by this harness.
 * Fields: host, port, url, dir, certs, pid, proc, password, tls, kind.
 */
class RedisServer {
  /**
   * @param {object} init
   * @param {'redis' | 'sentinel'} init.kind
   * @param {number} init.port
   * @param {StartOptions} init.opts
   * @param {Certs} [init.certs]
   * @param {(dir: string) => string} [init.sentinelConf] sentinel.conf content factory
   */
  constructor({ kind, port, opts, certs, sentinelConf }) {
    this.id = ++serverSeq
    /** @type {'redis' | 'sentinel'} */
    this.kind = kind
    this.host = HOST
    /** @type {number} */
    this.port = port
    /** @type {StartOptions} */
    this.opts = opts
    this.password = opts.password
    this.tls = Boolean(opts.tls)
    /** @type {Certs | undefined} */
    this.certs = certs
    /** @type {string | undefined} temp dir of the current incarnation */
    this.dir = undefined
    /** @type {import('node:child_process').ChildProcess | undefined} */
    this.proc = undefined
    this.paused = false
    this._sentinelConf = sentinelConf
    this._exit = undefined // Promise resolved on process exit
    this._exited = true // no process yet
    this._stopping = undefined // Promise of an in-flight stop()
  }

  /** `redis://[:pw@]127.0.0.1:P` or `rediss://...` for TLS. */
  get url() {
    const auth = this.password ? `:${encodeURIComponent(this.password)}@` : ''
    return `${this.tls ? 'rediss' : 'redis'}://${auth}${this.host}:${this.port}`
  }

  /** PID of the current process (undefined before start). */
  get pid() {
    return this.proc?.pid
  }

  /** True while the process is running (possibly paused). */
  get running() {
    return Boolean(this.proc) && !this._exited
  }

  get logFile() {
    return this.dir && path.join(this.dir, this.kind === 'sentinel' ? 'sentinel.log' : 'redis.log')
  }

  /** Full redis-server argv for the current incarnation. */
  _serverArgs() {
    const o = this.opts
    const a = []
    if (this.kind === 'sentinel') a.push(path.join(this.dir, 'sentinel.conf'), '--sentinel')
    if (this.tls) {
      const c = this.certs
      const ac = typeof o.tls === 'object' ? o.tls.authClients : undefined
      const authClients = ac === true ? 'yes' : ac === 'optional' ? 'optional' : 'no'
      a.push(
        '--port',
        '0',
        '--tls-port',
        String(this.port),
        '--tls-cert-file',
        c.serverCert,
        '--tls-key-file',
        c.serverKey,
        '--tls-ca-cert-file',
        c.ca,
        '--tls-auth-clients',
        authClients,
      )
    } else {
      a.push('--port', String(this.port))
    }
    a.push('--bind', HOST, '--dir', this.dir, '--daemonize', 'no', '--logfile', this.logFile)
    if (this.kind === 'redis') {
      a.push(
        '--save',
        '',
        '--appendonly',
        'no',
        // Allow DEBUG SLEEP etc. from loopback — handy to simulate slow servers.
        '--enable-debug-command',
        'local',
        // Replicas sync immediately instead of waiting 5 s (diskless default).
        '--repl-diskless-sync-delay',
        '0',
      )
      if (o.password) a.push('--requirepass', o.password, '--masterauth', o.password)
      for (const u of o.users ?? []) {
        const rules = (u.rules ?? 'on ~* &* +@all').trim().split(/\s+/)
        a.push('--user', u.name, ...rules, ...(u.password !== undefined ? [`>${u.password}`] : []))
      }
    }
    a.push(...(o.args ?? []))
    return a
  }

  /** Spawn the process in a (new or kept) temp dir and wait until it answers PING. */
  async _start({ timeout = 10_000 } = {}) {
    if (!this.dir) this.dir = await makeTempDir()
    if (this.kind === 'sentinel') {
      const conf = path.join(this.dir, 'sentinel.conf')
      // On restart keep the file: sentinel rewrites it with its current view.
      if (!fs.existsSync(conf)) await fsp.writeFile(conf, this._sentinelConf(this.dir))
    }
    const outFile = path.join(this.dir, 'stdout.log')
    const out = fs.openSync(outFile, 'a')
    let child
    try {
      child = spawnTracked('redis-server', this._serverArgs(), { stdio: ['ignore', out, out] })
    } finally {
      fs.closeSync(out)
    }
    this.proc = child
    this.paused = false
    this._stopping = undefined
    this._exited = false
    this._exit = new Promise((resolve) => {
      const done = (info) => {
        this._exited = true
        resolve(info)
      }
      child.once('exit', (code, signal) => done({ code, signal }))
      child.once('error', (err) => done({ code: null, signal: null, error: err }))
    })
    child.unref() // never keep the test process alive just for a server

    const deadline = Date.now() + timeout
    for (;;) {
      if (!this.running) {
        const ex = await this._exit
        const why =
          ex.error?.code === 'ENOENT'
            ? 'redis-server not found on PATH'
            : `exited with ${ex.code ?? ex.signal ?? ex.error?.message}`
        throw new Error(
          `${this.kind} on port ${this.port} failed to start (${why}).\n` +
            `${tail(this.logFile)}\n${tail(outFile)}`.trimEnd(),
        )
      }
      if (await this._probe()) return this
      if (Date.now() > deadline) {
        await this.kill()
        throw new Error(`${this.kind} on port ${this.port} not ready after ${timeout} ms.\n` + tail(this.logFile))
      }
      await sleep(50)
    }
  }

  /**
   * One readiness probe: connect (TCP or TLS), send PING, read one line.
   * `+PONG` or `-NOAUTH ...` (password set) both mean "accepting commands".
   */
  _probe() {
    return new Promise((resolve) => {
      let sock
      let buf = ''
      const done = (ok) => {
        clearTimeout(timer)
        sock.destroy()
        resolve(ok)
      }
      const timer = setTimeout(() => done(false), 1000)
      const onConnect = () => sock.write('PING\r\n')
      if (this.tls) {
        sock = tls.connect(
          {
            host: this.host,
            port: this.port,
            ca: fs.readFileSync(this.certs.ca),
            cert: fs.readFileSync(this.certs.clientCert),
            key: fs.readFileSync(this.certs.clientKey),
          },
          onConnect,
        )
      } else {
        sock = net.connect({ host: this.host, port: this.port }, onConnect)
      }
      sock.setEncoding('utf8')
      sock.on('data', (d) => {
        buf += d
        const i = buf.indexOf('\r\n')
        if (i >= 0) {
          const line = buf.slice(0, i)
          done(line === '+PONG' || line.startsWith('-NOAUTH'))
        }
      })
      sock.on('error', () => done(false))
      sock.on('close', () => done(false))
    })
  }

  /**
   * redis-cli connection/auth/TLS flags for this server.
   * @param {CliOptions} [o]
   */
  cliArgs(o = {}) {
    const a = ['-h', this.host, '-p', String(this.port)]
    if (this.tls && o.tls !== false) {
      a.push('--tls', '--cacert', o.cacert ?? this.certs.ca)
      if (o.clientCert !== false) a.push('--cert', this.certs.clientCert, '--key', this.certs.clientKey)
    }
    if (o.auth !== false) {
      if (o.user) a.push('--user', o.user, '--pass', o.password ?? '')
      else if (o.password ?? this.password) a.push('-a', o.password ?? this.password)
    }
    a.push('--no-auth-warning')
    return a
  }

  /**
   * Run `redis-cli` against this server with the right host/port/auth/TLS
   * flags (and `-e`, so error replies give a non-zero exit).
   * Rejects on non-zero exit or timeout; resolves trimmed stdout (raw format:
   * one line per element of an array reply).
   *
   * @param {...(string | number | CliOptions)} args command words; an optional
   *   trailing plain object is taken as {@link CliOptions}.
   * @returns {Promise<string>}
   * @example await server.cli('SET', 'k', 'v'); // 'OK'
   * @example await server.cli('PING', { user: 'app', password: 'pw' });
   */
  cli(...args) {
    let o = {}
    if (args.length && typeof args[args.length - 1] === 'object' && args[args.length - 1] !== null) {
      o = args.pop()
    }
    return runOk('redis-cli', [...this.cliArgs(o), '-e', ...args.map(String)], {
      timeout: o.timeout ?? 10_000,
      input: o.input,
    })
  }

  /** Wait for exit while holding a ref'd timer (the child itself is unref'd). */
  async _waitExit() {
    if (!this._exit) return
    const keepAlive = setInterval(() => {}, 1000)
    try {
      await this._exit
    } finally {
      clearInterval(keepAlive)
    }
  }

  _signal(sig) {
    if (!this.running) return false
    try {
      return this.proc.kill(sig)
    } catch {
      return false
    }
  }

  /** SIGCONT + SIGTERM, SIGKILL after `graceMs`; resolves once the process exited. */
  async _terminate(graceMs = 3000) {
    if (!this.running) return this._waitExit()
    this._signal('SIGCONT')
    this.paused = false
    this._signal('SIGTERM')
    const timer = setTimeout(() => this._signal('SIGKILL'), graceMs)
    try {
      await this._waitExit()
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Stop the server: SIGCONT (if paused), SIGTERM, then SIGKILL after 3 s.
   * Resolves when the process has exited and its temp dir is removed.
   * Idempotent (concurrent / repeated calls share the same promise).
   * @returns {Promise<void>}
   */
  stop() {
    this._stopping ??= (async () => {
      await this._terminate()
      await removeDir(this.dir)
      this.dir = undefined
    })()
    return this._stopping
  }

  /**
   * SIGKILL the process (no graceful shutdown). Resolves on exit. The temp
   * dir is kept (so restart() can reuse it); call stop() to remove it.
   * @returns {Promise<void>}
   */
  async kill() {
    this._signal('SIGKILL')
    await this._waitExit()
  }

  /** Freeze the process with SIGSTOP (connections stay open, nothing answers). */
  pause() {
    if (this._signal('SIGSTOP')) this.paused = true
  }

  /** Continue a paused process (SIGCONT). */
  resume() {
    if (this._signal('SIGCONT')) this.paused = false
  }

  /**
   * Stop the process (gracefully, as stop()) and start it again on the SAME
   * port with the same options, certificates and temp dir (so e.g. a cluster
   * node keeps its nodes.conf, a sentinel its rewritten config). Works after
   * kill() or stop() too. Resolves this same object, updated (pid, proc, dir).
   * @returns {Promise<this>}
   */
  async restart() {
    await (this._stopping ?? this._terminate())
    await this._start()
    return this
  }
}

/**
 * Start a redis-server on 127.0.0.1 (fresh temp dir, no persistence, logs to
 * `<dir>/redis.log`) and wait (≤ 10 s) until it answers PING.
 *
 * Extra defaults: `--enable-debug-command local` (DEBUG SLEEP works) and
 * `--repl-diskless-sync-delay 0`. With `password`, `masterauth` is set too.
 *
 * @param {StartOptions} [opts]
 * @returns {Promise<RedisServer>} `{ host, port, url, dir, certs, pid, proc,
 *   password, tls, logFile, cli(...args), cliArgs(opts), stop(), kill(),
 *   pause(), resume(), restart() }`
 */
export async function startRedis(opts = {}) {
  return startProcess('redis', opts)
}

async function startProcess(kind, opts, sentinelConf) {
  if (opts.port !== undefined && FORBIDDEN_PORTS.has(opts.port)) {
    throw new Error(`refusing to use port ${opts.port}`)
  }
  const certs = opts.tls ? await makeCerts() : undefined
  const bus = (opts.args ?? []).includes('--cluster-enabled')
  // With an auto-picked port, retry on a new one if we lost a bind race.
  const attempts = opts.port === undefined ? 3 : 1
  for (let i = 1; ; i++) {
    const port = opts.port ?? (await freePort({ bus }))
    const server = new RedisServer({ kind, port, opts: { ...opts }, certs, sentinelConf })
    try {
      return await server._start()
    } catch (err) {
      await server.stop().catch(() => {})
      const bindRace = /Address already in use|Could not create server TCP/i.test(err.message)
      if (!bindRace || i >= attempts) throw err
    }
  }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/**
 * Parse the `key:value` lines of an INFO-like reply.
 * @param {string} text
 * @returns {Record<string, string>}
 */
export function parseInfo(text) {
  const out = {}
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':')
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim()
  }
  return out
}

/** The redis-server arguments of a cluster node (its config file in its own temp dir). */
export const CLUSTER_NODE_ARGS = [
  '--cluster-enabled',
  'yes',
  '--cluster-config-file',
  'nodes.conf',
  '--cluster-node-timeout',
  '2000',
]

/**
 * Start a Redis Cluster: `primaries * (1 + replicas)` nodes with
 * `--cluster-enabled yes --cluster-config-file nodes.conf` (inside each
 * node's dir) `--cluster-node-timeout 2000`, joined with
 * `redis-cli --cluster create ... --cluster-replicas R --cluster-yes`.
 * Resolves once every node reports `cluster_state:ok`, knows all nodes and
 * all 16384 slots are assigned, and every replica's link is up (≤ 20 s).
 *
 * URL form: `redis-cluster://[:pw@]127.0.0.1:P1?node=127.0.0.1:P2&node=127.0.0.1:P3`
 * (first node in the authority, every other node as a `node=` parameter).
 *
 * @param {{ primaries?: number, replicas?: number, password?: string, args?: string[] }} [opts]
 * @returns {Promise<{ nodes: RedisServer[], url: string, seeds: {host: string, port: number}[],
 *   password?: string, cli: (...args: any[]) => Promise<string>, stop: () => Promise<void> }>}
 *   `cli(...)` runs `redis-cli -c` (follows MOVED/ASK) against nodes[0].
 */
export async function startCluster({ primaries = 3, replicas = 0, password, args = [] } = {}) {
  if (primaries < 3) throw new Error('a Redis Cluster needs at least 3 primaries')
  const total = primaries * (1 + replicas)
  const nodeArgs = [...CLUSTER_NODE_ARGS, ...args]
  const settled = await Promise.allSettled(
    Array.from({ length: total }, () => startRedis({ password, args: nodeArgs })),
  )
  const nodes = settled.filter((s) => s.status === 'fulfilled').map((s) => s.value)
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()))
  }
  try {
    const failed = settled.find((s) => s.status === 'rejected')
    if (failed) throw failed.reason

    const createArgs = [
      '--cluster',
      'create',
      ...nodes.map((n) => `${n.host}:${n.port}`),
      '--cluster-replicas',
      String(replicas),
      '--cluster-yes',
    ]
    if (password) createArgs.push('-a', password, '--no-auth-warning')
    await runOk('redis-cli', createArgs, { timeout: 30_000 })

    await waitFor(
      async () => {
        for (const n of nodes) {
          const info = parseInfo(await n.cli('CLUSTER', 'INFO', { timeout: 2000 }))
          if (
            info.cluster_state !== 'ok' ||
            Number(info.cluster_known_nodes) !== total ||
            Number(info.cluster_slots_assigned) !== 16384
          )
            return false
          // Every node's view: all nodes connected, the right number of
          // primaries and replicas (replica roles propagate by gossip).
          const view = (await n.cli('CLUSTER', 'NODES', { timeout: 2000 }))
            .split('\n')
            .filter(Boolean)
            .map((l) => l.split(' '))
          if (view.length !== total) return false
          if (view.some(([, , flags, , , , , link]) => /fail|handshake|noaddr/.test(flags) || link !== 'connected'))
            return false
          const masters = view.filter(([, , flags]) => flags.split(',').includes('master')).length
          if (masters !== primaries) return false
          const repl = parseInfo(await n.cli('INFO', 'replication', { timeout: 2000 }))
          if (repl.role === 'slave' && repl.master_link_status !== 'up') return false
        }
        return true
      },
      { timeout: 20_000, interval: 200, what: 'cluster_state:ok on all nodes' },
    )
  } catch (err) {
    await stop()
    throw err
  }

  const [first, ...rest] = nodes
  const auth = password ? `:${encodeURIComponent(password)}@` : ''
  const query = rest.map((n) => `node=${n.host}:${n.port}`).join('&')
  return {
    nodes,
    url: `redis-cluster://${auth}${first.host}:${first.port}${query ? `?${query}` : ''}`,
    seeds: nodes.map((n) => ({ host: n.host, port: n.port })),
    password,
    cli: (...a) => first.cli('-c', ...a),
    stop,
  }
}

// ---------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------

/** Parse a raw (redis-cli, non-tty) flat key/value array reply into an object. */
function parsePairs(lines) {
  const out = {}
  for (let i = 0; i + 1 < lines.length; i += 2) out[lines[i]] = lines[i + 1]
  return out
}

/**
 * Start a Sentinel deployment: a primary, one replica (`--replicaof`), and 3
 * sentinels (`redis-server <dir>/sentinel.conf --sentinel --port S`) that
 * monitor `mymaster` with quorum 2, `down-after-milliseconds 1000`,
 * `failover-timeout 5000`, `resolve-hostnames no`.
 * Resolves once the replica is synced and every sentinel sees the primary,
 * the replica (flags `slave`) and the 2 other sentinels (≤ 20 s).
 *
 * URL form (sentinel addresses, not data nodes):
 *   `redis-sentinel://[:pw@]127.0.0.1:S1?node=127.0.0.1:S2&node=127.0.0.1:S3&service_name=mymaster`
 * where `pw` (if `password` is given) is the DATA nodes' password; the
 * sentinels themselves require no auth.
 *
 * Note: Sentinel will not fail over the same master again within
 * 2 × failover-timeout (10 s) of a previous failover.
 *
 * @param {{ password?: string }} [opts]
 * @returns {Promise<{ primary: RedisServer, replica: RedisServer, sentinels: RedisServer[],
 *   serviceName: 'mymaster', url: string, password?: string,
 *   currentPrimaryPort: () => Promise<number>, currentPrimary: () => Promise<RedisServer|undefined>,
 *   stop: () => Promise<void> }>}
 *   `primary`/`replica` are the INITIAL roles; after a failover use currentPrimaryPort().
 */
export async function startSentinel({ password } = {}) {
  const serviceName = 'mymaster'
  const started = []
  const sentinels = []
  const stop = async () => {
    // Sentinels first, so they do not start a failover during teardown.
    await Promise.all(sentinels.map((s) => s.stop()))
    await Promise.all(started.map((s) => s.stop()))
  }
  try {
    const primary = await startRedis({ password })
    started.push(primary)
    const replica = await startRedis({ password, args: ['--replicaof', HOST, String(primary.port)] })
    started.push(replica)
    await waitFor(
      async () =>
        parseInfo(await replica.cli('INFO', 'replication')).master_link_status === 'up' &&
        Number(parseInfo(await primary.cli('INFO', 'replication')).connected_slaves) === 1,
      { timeout: 10_000, what: 'replica to sync with primary' },
    )

    const conf = (dir) =>
      [
        `dir ${JSON.stringify(dir)}`,
        'sentinel resolve-hostnames no',
        `sentinel monitor ${serviceName} ${HOST} ${primary.port} 2`,
        `sentinel down-after-milliseconds ${serviceName} 1000`,
        `sentinel failover-timeout ${serviceName} 5000`,
        ...(password ? [`sentinel auth-pass ${serviceName} ${JSON.stringify(password)}`] : []),
        '',
      ].join('\n')
    const results = await Promise.allSettled([0, 1, 2].map(() => startProcess('sentinel', {}, conf)))
    for (const r of results) if (r.status === 'fulfilled') sentinels.push(r.value)
    const failed = results.find((r) => r.status === 'rejected')
    if (failed) throw failed.reason

    await waitFor(
      async () => {
        for (const s of sentinels) {
          const m = parsePairs((await s.cli('SENTINEL', 'master', serviceName, { timeout: 2000 })).split('\n'))
          if (m.flags !== 'master' || Number(m['num-slaves']) !== 1 || Number(m['num-other-sentinels']) !== 2)
            return false
          const r = parsePairs((await s.cli('SENTINEL', 'replicas', serviceName, { timeout: 2000 })).split('\n'))
          if (Number(r.port) !== replica.port || r.flags !== 'slave') return false
        }
        return true
      },
      { timeout: 20_000, interval: 200, what: 'sentinels to discover replica and each other' },
    )

    const [first, ...rest] = sentinels
    const auth = password ? `:${encodeURIComponent(password)}@` : ''
    const query = [...rest.map((s) => `node=${s.host}:${s.port}`), `service_name=${serviceName}`].join('&')

    /** Ask the sentinels (first that answers) for the current primary's port. */
    const currentPrimaryPort = async () => {
      let lastErr
      for (const s of sentinels) {
        if (!s.running || s.paused) continue
        try {
          const out = await s.cli('SENTINEL', 'get-master-addr-by-name', serviceName, { timeout: 2000 })
          const port = Number(out.split('\n')[1])
          if (Number.isInteger(port) && port > 0) return port
          lastErr = new Error(`unexpected reply: ${out}`)
        } catch (err) {
          lastErr = err
        }
      }
      throw lastErr ?? new Error('no sentinel running')
    }

    return {
      primary,
      replica,
      sentinels,
      serviceName,
      password,
      url: `redis-sentinel://${auth}${first.host}:${first.port}?${query}`,
      currentPrimaryPort,
      /** The data-node Server object currently acting as primary (per sentinels). */
      currentPrimary: async () => {
        const port = await currentPrimaryPort()
        return started.find((s) => s.port === port)
      },
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

// ---------------------------------------------------------------------------
// Fault-injection TCP proxy
// ---------------------------------------------------------------------------

const PROXY_MODES = new Set(['pass', 'latency', 'blackhole', 'refuse', 'reset'])

/** Send an RST (falls back to a plain destroy). Never throws. */
function hardReset(sock) {
  if (!sock || sock.destroyed) return
  try {
    sock.resetAndDestroy()
  } catch {
    sock.destroy()
  }
}

/**
 * One direction of a proxied connection: an ordered queue of chunks, each
 * released at its due time (latency) — chunks never overtake each other.
 */
class Pipe {
  constructor(proxy, src, dst) {
    this.proxy = proxy
    this.src = src
    this.dst = dst
    /** @type {{ chunk: Buffer, at: number }[]} */
    this.queue = []
    this.lastAt = 0
    this.timer = undefined
    this.srcEnded = false
    this.dstEnded = false
    this.awaitingDrain = false
  }

  onData(chunk) {
    const { mode, arg } = this.proxy
    if (mode === 'blackhole') return // swallowed silently
    const now = Date.now()
    const delay = mode === 'latency' ? Number(arg) || 0 : 0
    const at = Math.max(now + delay, this.lastAt)
    this.lastAt = at
    this.queue.push({ chunk, at })
    this.flush()
  }

  onEnd() {
    this.srcEnded = true
    this.flush()
  }

  /** Write every due chunk; propagate FIN once drained (not in blackhole). */
  flush() {
    clearTimeout(this.timer)
    this.timer = undefined
    const now = Date.now()
    while (this.queue.length && this.queue[0].at <= now) {
      const { chunk } = this.queue.shift()
      if (this.dst.destroyed || this.dst.writableEnded) continue
      if (!this.dst.write(chunk) && !this.awaitingDrain) {
        // Backpressure: stop reading the source until the destination drains.
        this.awaitingDrain = true
        this.src.pause()
        this.dst.once('drain', () => {
          this.awaitingDrain = false
          this.src.resume()
        })
      }
    }
    if (this.queue.length) {
      this.timer = setTimeout(() => this.flush(), this.queue[0].at - now)
    } else if (this.srcEnded && !this.dstEnded && this.proxy.mode !== 'blackhole') {
      this.dstEnded = true
      if (!this.dst.destroyed) this.dst.end()
    }
  }

  /** Mode changed: blackhole drops what is queued; otherwise re-flush. */
  onModeChange() {
    if (this.proxy.mode === 'blackhole') {
      clearTimeout(this.timer)
      this.timer = undefined
      this.queue.length = 0
    } else {
      this.flush()
    }
  }

  dispose() {
    clearTimeout(this.timer)
    this.queue.length = 0
  }
}

/**
 * @typedef {object} Proxy
 * @property {string} host  '127.0.0.1'
 * @property {number} port  the proxy's listening port (point clients here)
 * @property {string} mode  current mode
 * @property {*} arg        current mode argument (latency ms)
 * @property {number} connections live client sockets
 * @property {number} accepted total client connections accepted so far
 * @property {(mode: 'pass'|'latency'|'blackhole'|'refuse'|'reset', arg?: number) => void} setMode
 * @property {() => Promise<void>} close
 */

/**
 * Start a TCP fault-injection proxy on a free loopback port forwarding to
 * `targetHost:targetPort` (works for TLS too — it only moves bytes).
 *
 * Modes (switchable at any time; apply to existing connections as well):
 *  - 'pass'      forward bytes both ways (default).
 *  - 'latency'   `arg` ms added to every chunk in each direction (order kept;
 *                a round trip therefore costs ≥ 2×arg).
 *  - 'blackhole' accept connections and keep them open, silently swallow
 *                every byte both ways (also what was queued), never send
 *                RST/FIN, not even when the target closes or fails.
 *                Switching back to 'pass' resumes forwarding (swallowed bytes
 *                are lost).
 *  - 'refuse'    new connections are accepted and immediately reset (RST);
 *                existing connections keep passing bytes.
 *  - 'reset'     every current connection is reset (RST to client and
 *                target) and so is every new one.
 * A failure of the target connection (refused, reset) is propagated to the
 * client as an RST (except in blackhole mode); a FIN as a FIN.
 *
 * @param {number} targetPort
 * @param {string} [targetHost='127.0.0.1']
 * @returns {Promise<Proxy>}
 */
export async function startProxy(targetPort, targetHost = HOST) {
  if (FORBIDDEN_PORTS.has(targetPort)) throw new Error(`refusing to proxy to port ${targetPort}`)
  /** @type {Set<{ client: net.Socket, upstream: net.Socket, up: Pipe, down: Pipe }>} */
  const pairs = new Set()
  let accepted = 0
  let closed = false

  const proxy = {
    host: HOST,
    port: 0,
    target: { host: targetHost, port: targetPort },
    mode: 'pass',
    arg: undefined,
    get connections() {
      let n = 0
      for (const p of pairs) if (!p.client.destroyed) n++
      return n
    },
    get accepted() {
      return accepted
    },
    /**
     * Switch mode; applies immediately to existing connections.
     * @param {'pass'|'latency'|'blackhole'|'refuse'|'reset'} mode
     * @param {number} [arg] latency in ms for 'latency'
     */
    setMode(mode, arg) {
      if (!PROXY_MODES.has(mode)) throw new Error(`unknown proxy mode ${mode}`)
      if (mode === 'latency' && !(Number(arg) >= 0)) throw new Error('latency mode needs arg = ms')
      proxy.mode = mode
      proxy.arg = arg
      for (const p of [...pairs]) {
        if (mode === 'reset') {
          destroyPair(p, true)
        } else {
          p.up.onModeChange()
          p.down.onModeChange()
          // Upstream failed while blackholed: surface it now.
          if (mode !== 'blackhole' && p.upstreamFailed) destroyPair(p, true)
        }
      }
    },
    /** Destroy every connection and stop listening. */
    async close() {
      if (closed) return
      closed = true
      for (const p of [...pairs]) destroyPair(p, false)
      await new Promise((resolve) => server.close(() => resolve()))
    },
  }

  function destroyPair(p, reset) {
    pairs.delete(p)
    p.up.dispose()
    p.down.dispose()
    if (reset) {
      hardReset(p.client)
      hardReset(p.upstream)
    } else {
      p.client.destroy()
      p.upstream.destroy()
    }
  }

  const server = net.createServer((client) => {
    accepted++
    client.on('error', () => {})
    if (closed || proxy.mode === 'refuse' || proxy.mode === 'reset') {
      hardReset(client)
      return
    }
    const upstream = net.connect({ host: targetHost, port: targetPort })
    upstream.on('error', () => {})
    const p = { client, upstream, upstreamFailed: false }
    p.up = new Pipe(proxy, client, upstream)
    p.down = new Pipe(proxy, upstream, client)
    pairs.add(p)

    client.on('data', (d) => p.up.onData(d))
    upstream.on('data', (d) => p.down.onData(d))
    client.on('end', () => p.up.onEnd())
    upstream.on('end', () => p.down.onEnd())
    client.on('close', (hadError) => {
      if (!pairs.has(p)) return
      // Client gone: abort the target side if it was abrupt, else let the
      // pending FIN (up.onEnd) close it gracefully, then drop the pair.
      if (hadError) destroyPair(p, true)
      else if (upstream.destroyed) pairs.delete(p)
    })
    upstream.on('close', (hadError) => {
      if (!pairs.has(p)) return
      if (proxy.mode === 'blackhole') {
        // Keep the client connection open and silent.
        p.upstreamFailed = true
        return
      }
      if (hadError) destroyPair(p, true)
      else if (client.destroyed) pairs.delete(p)
    })
  })
  server.on('error', () => {})
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: HOST, port: 0 }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.unref() // a forgotten proxy must not keep the test process alive
  proxy.port = server.address().port
  return proxy
}
