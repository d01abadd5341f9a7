// Self-test of the Redis test harness (__tests__/helpers/redis.mjs).
// Run: node --test __tests__/harness.test.mjs
//
// Starts real redis-server processes (standalone, ACL, TLS, cluster,
// sentinel) and the fault proxy, and checks they behave as documented.
// Every test stops what it started in `finally`.

import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { freePort, makeCerts, startCluster, startProxy, startRedis, startSentinel, waitFor } from './helpers/redis.mjs'
import { runOk } from './helpers/utils.mjs'

const HELPERS = fileURLToPath(new URL('./helpers/redis.mjs', import.meta.url))

/** True if `pid` no longer runs (gone, or a zombie waiting to be reaped). */
function isDead(pid) {
  try {
    process.kill(pid, 0)
  } catch {
    return true
  }
  try {
    return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return true
  }
}

/** Minimal raw RESP line client over TCP. */
class RawConn {
  constructor(port) {
    this.sock = net.connect({ host: '127.0.0.1', port })
    this.sock.setEncoding('utf8')
    this.buf = ''
    this.error = null
    this.isClosed = false
    this._notify = () => {}
    this.closed = new Promise((resolve) => {
      this.sock.on('close', () => {
        this.isClosed = true
        this._notify()
        resolve()
      })
    })
    this.sock.on('error', (err) => {
      this.error = err
    })
    this.sock.on('data', (d) => {
      this.buf += d
      this._notify()
    })
  }

  send(cmd) {
    this.sock.write(`${cmd}\r\n`)
  }

  /** Next reply line, or 'TIMEOUT' / 'CLOSED'. */
  readLine(timeout = 2000) {
    return new Promise((resolve) => {
      const check = () => {
        const i = this.buf.indexOf('\r\n')
        if (i >= 0) {
          const line = this.buf.slice(0, i)
          this.buf = this.buf.slice(i + 2)
          finish(line)
        } else if (this.isClosed) {
          finish('CLOSED')
        }
      }
      const timer = setTimeout(() => finish('TIMEOUT'), timeout)
      const finish = (v) => {
        clearTimeout(timer)
        this._notify = () => {}
        resolve(v)
      }
      this._notify = check
      check()
    })
  }

  /** send + readLine, with the elapsed time. */
  async roundTrip(cmd, timeout) {
    const t0 = Date.now()
    this.send(cmd)
    const line = await this.readLine(timeout)
    return { line, ms: Date.now() - t0 }
  }

  destroy() {
    this.sock.destroy()
  }
}

test('freePort returns distinct loopback ports, with free bus port on request', async () => {
  const a = await freePort()
  const b = await freePort()
  const c = await freePort({ bus: true })
  assert.notEqual(a, b)
  assert.ok(![a, b, c].includes(6379))
  assert.ok(c + 10000 <= 65535)
  // The bus port really is bindable.
  await new Promise((resolve, reject) => {
    const srv = net
      .createServer()
      .once('error', reject)
      .listen(c + 10000, '127.0.0.1', () => srv.close(resolve))
  })
})

test('makeCerts produces a cached, rustls-friendly PKI', async () => {
  const certs = await makeCerts()
  assert.equal(await makeCerts(), certs, 'cached per process')
  for (const key of ['ca', 'caKey', 'serverCert', 'serverKey', 'clientCert', 'clientKey', 'wrongCa']) {
    assert.ok(path.isAbsolute(certs[key]) && fs.existsSync(certs[key]), key)
  }
  const ca = new X509Certificate(fs.readFileSync(certs.ca))
  const server = new X509Certificate(fs.readFileSync(certs.serverCert))
  const client = new X509Certificate(fs.readFileSync(certs.clientCert))
  const wrong = new X509Certificate(fs.readFileSync(certs.wrongCa))
  assert.equal(ca.ca, true)
  assert.equal(server.ca, false)
  assert.equal(client.ca, false)
  assert.ok(server.verify(ca.publicKey) && server.checkIssued(ca))
  assert.ok(client.verify(ca.publicKey) && client.checkIssued(ca))
  assert.ok(!server.checkIssued(wrong))
  assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1')
  assert.equal(server.checkHost('localhost'), 'localhost')
  assert.ok(server.keyUsage.includes('1.3.6.1.5.5.7.3.1'), 'server EKU serverAuth')
  assert.ok(client.keyUsage.includes('1.3.6.1.5.5.7.3.2'), 'client EKU clientAuth')
  const { stdout } = await runOk('openssl', ['x509', '-in', certs.ca, '-noout', '-text'])
  assert.match(stdout, /Version: 3/)
  assert.match(stdout, /CA:TRUE/)
  assert.match(stdout, /Certificate Sign/)
  const v = await runOk('openssl', ['verify', '-CAfile', certs.ca, certs.serverCert, certs.clientCert])
  assert.match(v.stdout, /server\.crt: OK[\s\S]*client\.crt: OK/)
})

test('standalone with password: url, cli, auth required, stop cleans up', async () => {
  const s = await startRedis({ password: 's3cr3t' })
  try {
    assert.equal(s.host, '127.0.0.1')
    assert.notEqual(s.port, 6379)
    assert.equal(s.url, `redis://:s3cr3t@127.0.0.1:${s.port}`)
    assert.ok(fs.existsSync(path.join(s.dir, 'redis.log')))
    assert.ok(path.basename(s.dir).startsWith('redis-guard-test-'))
    assert.equal(await s.cli('PING'), 'PONG')
    assert.equal(await s.cli('SET', 'k', 'v'), 'OK')
    assert.equal(await s.cli('GET', 'k'), 'v')
    await assert.rejects(s.cli('PING', { auth: false }), /NOAUTH/)
    await assert.rejects(s.cli('NOSUCHCOMMAND'), /unknown command/)
  } finally {
    const { pid, dir } = s
    await s.stop()
    await s.stop() // idempotent
    assert.ok(isDead(pid), 'process exited')
    assert.ok(!fs.existsSync(dir), 'dir removed')
  }
})

test('ACL users', async () => {
  const s = await startRedis({ users: [{ name: 'app', password: 'apppw', rules: 'on ~rl:* +@all' }] })
  try {
    const as = { user: 'app', password: 'apppw' }
    assert.equal(await s.cli('SET', 'rl:1', 'x', as), 'OK')
    await assert.rejects(s.cli('SET', 'other', 'x', as), /NOPERM/)
    await assert.rejects(s.cli('AUTH', 'app', 'wrong', { auth: false }), /WRONGPASS/)
    assert.equal(await s.cli('ACL', 'WHOAMI', as), 'app')
  } finally {
    await s.stop()
  }
})

test('TLS server (redis-cli --tls), wrong CA and client-cert requirement', async () => {
  const s = await startRedis({ tls: true, password: 'pw' })
  const m = await startRedis({ tls: { authClients: true } })
  try {
    assert.equal(s.url, `rediss://:pw@127.0.0.1:${s.port}`)
    assert.ok(s.certs && fs.existsSync(s.certs.ca))
    assert.equal(await s.cli('PING'), 'PONG')
    assert.ok(s.cliArgs().includes('--tls'))
    await assert.rejects(s.cli('PING', { tls: false, timeout: 3000 }))
    await assert.rejects(s.cli('PING', { cacert: s.certs.wrongCa }))
    // Plain redis-cli --tls with only the CA works when client auth is off.
    const { stdout } = await runOk('redis-cli', [
      '--tls',
      '--cacert',
      s.certs.ca,
      '-h',
      '127.0.0.1',
      '-p',
      String(s.port),
      '-a',
      'pw',
      '--no-auth-warning',
      'PING',
    ])
    assert.equal(stdout.trim(), 'PONG')
    // authClients: true -> a client certificate is mandatory.
    assert.equal(await m.cli('PING'), 'PONG')
    await assert.rejects(m.cli('PING', { clientCert: false }))
  } finally {
    await Promise.all([s.stop(), m.stop()])
  }
})

test('pause / resume / restart / kill', async () => {
  const s = await startRedis()
  try {
    const conn = new RawConn(s.port)
    assert.equal((await conn.roundTrip('PING')).line, '+PONG')
    s.pause()
    assert.equal((await conn.roundTrip('PING', 400)).line, 'TIMEOUT')
    s.resume()
    assert.equal(await conn.readLine(), '+PONG', 'queued PING answered after resume')
    conn.destroy()

    const { port, pid } = s
    assert.equal(await s.restart(), s)
    assert.equal(s.port, port)
    assert.notEqual(s.pid, pid)
    assert.ok(isDead(pid))
    assert.equal(await s.cli('PING'), 'PONG')

    s.pause()
    const pausedPid = s.pid
    await s.kill()
    assert.ok(isDead(pausedPid))
    await s.restart() // also works after kill
    assert.equal(await s.cli('PING'), 'PONG')
    s.pause() // stop() must SIGCONT a paused process
  } finally {
    const t0 = Date.now()
    await s.stop()
    assert.ok(Date.now() - t0 < 2500, 'paused server stops gracefully')
  }
})

test('a forgotten server dies with the test process', async () => {
  const script = `
    import { startRedis } from ${JSON.stringify(HELPERS)};
    const s = await startRedis();
    s.pause();
    console.log(JSON.stringify({ pid: s.pid, dir: s.dir }));
    // no stop(): the event loop empties, Node exits, the harness kills it
  `
  const { stdout } = await runOk(process.execPath, ['--input-type=module', '-e', script], { timeout: 15000 })
  const { pid, dir } = JSON.parse(stdout.trim())
  await waitFor(() => isDead(pid), { timeout: 3000, what: `pid ${pid} to die` })
  assert.ok(!fs.existsSync(dir))
})

test('cluster of 3 primaries', async () => {
  const c = await startCluster({ primaries: 3 })
  try {
    assert.equal(c.nodes.length, 3)
    const [p1, p2, p3] = c.nodes.map((n) => n.port)
    assert.equal(c.url, `redis-cluster://127.0.0.1:${p1}?node=127.0.0.1:${p2}&node=127.0.0.1:${p3}`)
    assert.deepEqual(
      c.seeds,
      c.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
    )
    for (const n of c.nodes) {
      assert.match(await n.cli('CLUSTER', 'INFO'), /cluster_state:ok/)
      assert.ok(fs.existsSync(path.join(n.dir, 'nodes.conf')))
    }
    // Keys on different slots / nodes via redirections.
    for (const k of ['a', 'b', 'c', 'd', 'e']) assert.equal(await c.cli('SET', k, k), 'OK')
    assert.equal(await c.cli('GET', 'e'), 'e')
  } finally {
    await c.stop()
  }
})

test('sentinel set and failover', async () => {
  const s = await startSentinel()
  try {
    assert.equal(s.serviceName, 'mymaster')
    assert.equal(s.sentinels.length, 3)
    const [s1, s2, s3] = s.sentinels.map((x) => x.port)
    assert.equal(
      s.url,
      `redis-sentinel://127.0.0.1:${s1}?node=127.0.0.1:${s2}&node=127.0.0.1:${s3}&service_name=mymaster`,
    )
    assert.equal(await s.currentPrimaryPort(), s.primary.port)
    assert.match(await s.replica.cli('INFO', 'replication'), /role:slave/)
    assert.equal(await s.primary.cli('SET', 'fo', '1'), 'OK')

    assert.equal(await s.sentinels[0].cli('SENTINEL', 'FAILOVER', 'mymaster'), 'OK')
    await waitFor(async () => (await s.currentPrimaryPort()) === s.replica.port, {
      timeout: 15000,
      what: 'failover to the replica',
    })
    assert.equal(await s.currentPrimary(), s.replica)
    await waitFor(async () => /role:master/.test(await s.replica.cli('INFO', 'replication')), {
      timeout: 5000,
      what: 'replica promoted',
    })
  } finally {
    await s.stop()
  }
})

test('fault proxy: pass, latency, blackhole, refuse, reset', async () => {
  const server = await startRedis()
  const proxy = await startProxy(server.port)
  const conns = []
  const open = (port = proxy.port) => {
    const c = new RawConn(port)
    conns.push(c)
    return c
  }
  try {
    assert.equal(proxy.mode, 'pass')
    // pass
    const a = open()
    assert.equal((await a.roundTrip('PING')).line, '+PONG')
    assert.equal(proxy.connections, 1)

    // latency: applied in each direction -> round trip >= 2 * 150 ms
    proxy.setMode('latency', 150)
    const slow = await a.roundTrip('PING')
    assert.equal(slow.line, '+PONG')
    assert.ok(slow.ms >= 290, `latency round trip ${slow.ms} ms`)
    // pipelined commands keep their order
    a.send('ECHO one')
    a.send('ECHO two')
    assert.equal(await a.readLine(), '$3')
    assert.equal(await a.readLine(), 'one')
    assert.equal(await a.readLine(), '$3')
    assert.equal(await a.readLine(), 'two')
    proxy.setMode('pass')
    const fast = await a.roundTrip('PING')
    assert.equal(fast.line, '+PONG')
    assert.ok(fast.ms < 100, `pass round trip ${fast.ms} ms`)

    // blackhole: existing and new connections stay open and silent
    proxy.setMode('blackhole')
    assert.equal((await a.roundTrip('PING', 500)).line, 'TIMEOUT')
    const b = open()
    assert.equal((await b.roundTrip('PING', 300)).line, 'TIMEOUT')
    assert.ok(!a.isClosed && !b.isClosed, 'no FIN / RST in blackhole')
    assert.equal(proxy.connections, 2)
    // back to pass: the swallowed PING is lost, the next one is answered
    proxy.setMode('pass')
    assert.equal((await a.roundTrip('PING')).line, '+PONG')
    assert.equal((await b.roundTrip('PING')).line, '+PONG')

    // refuse: new connections are reset, existing ones keep working
    proxy.setMode('refuse')
    const r = open()
    assert.equal(await r.readLine(), 'CLOSED')
    assert.equal((await a.roundTrip('PING')).line, '+PONG')

    // reset: every current connection is reset, and every new one
    proxy.setMode('reset')
    await Promise.all([a.closed, b.closed])
    assert.equal(a.error?.code, 'ECONNRESET')
    const n = open()
    assert.equal(await n.readLine(), 'CLOSED')
    await waitFor(() => proxy.connections === 0, { timeout: 2000, what: 'no live connections' })

    // and recovery
    proxy.setMode('pass')
    assert.equal((await open().roundTrip('PING')).line, '+PONG')

    // the target going away closes the client connection
    const d = open()
    assert.equal((await d.roundTrip('PING')).line, '+PONG')
    await server.kill()
    await d.closed
  } finally {
    for (const c of conns) c.destroy()
    await proxy.close()
    await server.stop()
  }
})
