// Configuration: bad input is a synchronous, typed error that never shows a secret, and the
// documented precedence (options > REDIS_URL > REDIS_HOST/... > Railway names > default) holds.
// Run: node --test __tests__/config.test.mjs
//
// Only the percent-encoded-credentials test and the URL-string test start a redis-server;
// every other client is pointed at a closed loopback port (refused at once) and closed again.

import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import util from 'node:util'

import { freePort, makeCerts, startRedis } from './helpers/redis.mjs'

const require = createRequire(import.meta.url)
const { RedisClient, RedisGuardError, codes } = require('../index.js')

/** The password every bad input carries somewhere. Special characters on purpose. */
const PW = 'Sup3r:S3cr3t@pw/42'
const PW_ENC = encodeURIComponent(PW) // 'Sup3r%3AS3cr3t%40pw%2F42'
/** Key material pasted without its PEM armour (a base64 body): a secret too. */
const KEY_BODY =
  'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgS3cr3tK3yM4t3r14l' +
  'hRANCAAQRgaxK91Pcc5zJnZgxUswJdqrK7Pq5BhazKzvfXGdf64ajrBiwW/KaZnFR8ArekAuQ'

let closedPort // a loopback port nobody listens on
let certs

before(async () => {
  closedPort = await freePort()
  certs = await makeCerts()
})

/** Build a client, close it whatever happens (used where construction must succeed). */
async function withClient(options, fn) {
  const c = new RedisClient(options)
  try {
    return await fn(c)
  } finally {
    await c.close()
  }
}

/**
 * Assert `fn` throws synchronously a RedisGuardError with the CONFIG code, and that none of
 * `secrets` appears in its message, stack or util.inspect output.
 */
function assertConfigError(fn, secrets, label) {
  let threw = false
  let ret
  try {
    ret = fn()
  } catch (err) {
    threw = true
    assert.ok(err instanceof RedisGuardError, `${label}: not a RedisGuardError: ${util.inspect(err)}`)
    assert.ok(err instanceof Error, `${label}: not an Error`)
    assert.equal(err.code, 'ERR_REDIS_GUARD_CONFIG', `${label}: code ${err.code} (${err.message})`)
    assert.equal(err.code, codes.CONFIG)
    assert.ok(err.message.length > 10, `${label}: message too short: ${err.message}`)
    const shown = [err.message, String(err.stack), util.inspect(err), util.inspect(err, { showHidden: true, depth: 5 })]
    for (const s of secrets) {
      for (const text of shown) {
        assert.ok(!text.includes(s), `${label}: secret ${JSON.stringify(s)} leaked: ${text}`)
      }
    }
    return err
  }
  // Never leave a client running if construction unexpectedly succeeded.
  if (ret && typeof ret.close === 'function') ret.close().catch(() => {})
  assert.ok(threw, `${label}: did not throw (url ${ret && ret.url})`)
  return undefined
}

describe('bad configuration throws synchronously, typed, without the password', () => {
  // Each row: [label, () => constructor argument]. Each carries PW somewhere (URL, option or env).
  // A function so that closedPort / certs are read after before() ran.
  const url = (rest) => `redis://:${PW_ENC}@127.0.0.1:${rest}`
  const rows = () => [
    ['unsupported scheme', { url: `ftp://:${PW_ENC}@127.0.0.1:${closedPort}` }],
    ['http scheme', { url: `http://user:${PW_ENC}@127.0.0.1:${closedPort}` }],
    ['no scheme at all', { url: `:${PW_ENC}@127.0.0.1:${closedPort}` }],
    ['URL port 0', { url: url('0') }],
    ['URL port 70000', { url: url('70000') }],
    ['URL port "abc"', { url: url('abc') }],
    ['URL port is the password', { url: `redis://127.0.0.1:${PW_ENC}` }],
    ['option port 0', { host: '127.0.0.1', port: 0, password: PW }],
    ['option port 70000', { host: '127.0.0.1', port: 70000, password: PW }],
    ['option port "abc"', { host: '127.0.0.1', port: 'abc', password: PW }],
    ['option port 1.5', { host: '127.0.0.1', port: 1.5, password: PW }],
    ['URL db -1', { url: url(`${closedPort}/-1`) }],
    ['URL db 256', { url: url(`${closedPort}/256`) }],
    ['URL db "abc"', { url: url(`${closedPort}/abc`) }],
    ['option db -1', { port: closedPort, db: -1, password: PW }],
    ['option db 256', { port: closedPort, db: 256, password: PW }],
    ['option db "abc"', { port: closedPort, db: 'abc', password: PW }],
    ['URL empty host', { url: `redis://:${PW_ENC}@:${closedPort}` }],
    ['option host ""', { host: '', port: closedPort, password: PW }],
    ['option host "  "', { host: '  ', port: closedPort, password: PW }],
    ['malformed %zz in password', { url: `redis://user:${PW_ENC}%zz@127.0.0.1:${closedPort}` }],
    ['truncated % in password', { url: `redis://user:${PW_ENC}%4@127.0.0.1:${closedPort}` }],
    ['malformed %zz in user name', { url: `redis://us%zzer:${PW_ENC}@127.0.0.1:${closedPort}` }],
    ['unknown URL parameter', { url: `redis://:${PW_ENC}@127.0.0.1:${closedPort}?password=${PW_ENC}` }],
    ['tls.ca file missing', { port: closedPort, password: PW, tls: { ca: '/nonexistent/redis-guard/ca.pem' } }],
    [
      'tls.cert + tls.key files missing',
      {
        port: closedPort,
        password: PW,
        tls: { cert: '/nonexistent/redis-guard/c.pem', key: '/nonexistent/redis-guard/k.pem' },
      },
    ],
    ['tls.cert without tls.key', { port: closedPort, password: PW, tls: { ca: certs.ca, cert: certs.clientCert } }],
    ['tls.key without tls.cert', { port: closedPort, password: PW, tls: { ca: certs.ca, key: certs.clientKey } }],
    ['tls.ca file holds no PEM', { port: closedPort, password: PW, tls: { ca: path.join(certs.dir, 'req.cnf') } }],
    [
      'tls.key is key material without PEM armour',
      { port: closedPort, password: PW, tls: { ca: certs.ca, cert: certs.clientCert, key: KEY_BODY } },
    ],
    ['unknown top-level option', { port: closedPort, password: PW, passwrod: PW }],
    ['unknown tls option', { port: closedPort, password: PW, tls: { ca: certs.ca, rejectUnauthorized: false } }],
    ['unknown reconnect option', { port: closedPort, password: PW, reconnect: { retries: 3 } }],
    [
      'unknown sentinel option',
      { password: PW, sentinel: { name: 'mymaster', nodes: [`127.0.0.1:${closedPort}`], masterName: 'x' } },
    ],
    ['port as an object', { host: '127.0.0.1', port: { value: 1 }, password: PW }],
    ['tls as a number', { port: closedPort, password: PW, tls: 1 }],
    ['tls as a string', { port: closedPort, password: PW, tls: 'yes' }],
    ['url as a number', { url: 6380, password: PW }],
    ['url as an object', { url: { href: url(closedPort) } }],
    ['logger as a number', { port: closedPort, password: PW, logger: 1 }],
    ['logger as a string', { port: closedPort, password: PW, logger: 'debug' }],
    ['password as a number', { port: closedPort, username: PW, password: 1234 }],
    ['host as a function', { host: () => '127.0.0.1', port: closedPort, password: PW }],
    ['password as a function', { port: closedPort, password: () => 'x', username: 'u', env: { REDIS_PASSWORD: PW } }],
    ['lockPrefix as a function', { port: closedPort, password: PW, lockPrefix: () => 'x' }],
    ['host as a symbol', { host: Symbol('h'), port: closedPort, password: PW }],
    ['host as NaN', { host: NaN, port: closedPort, password: PW }],
    ['clusterNodes holding a function', { password: PW, clusterNodes: [() => '127.0.0.1:1'] }],
    ['clusterNodes as a string', { password: PW, clusterNodes: `127.0.0.1:${closedPort}` }],
    ['cluster URL with a db', { url: `redis-cluster://:${PW_ENC}@127.0.0.1:${closedPort}/3` }],
    ['cluster with option db', { password: PW, clusterNodes: [`127.0.0.1:${closedPort}`], db: 2 }],
    ['sentinel URL without service name', { url: `redis-sentinel://:${PW_ENC}@127.0.0.1:${closedPort}` }],
    ['sentinel option without nodes', { password: PW, sentinel: { name: 'mymaster', password: PW } }],
    // An explicit location means the environment is not read: its REDIS_PASSWORD does not count.
    [
      'username without password (options)',
      { host: '127.0.0.1', port: closedPort, username: 'limiter', env: { REDIS_PASSWORD: PW } },
    ],
    [
      'username without password (URL)',
      { url: `redis://limiter:@127.0.0.1:${closedPort}`, env: { REDIS_PASSWORD: PW } },
    ],
    ['REDIS_PORT=abc via env', { env: { REDIS_HOST: '127.0.0.1', REDIS_PORT: 'abc', REDIS_PASSWORD: PW } }],
    [
      'REDIS_PORT=0 via env (Railway REDISPORT)',
      { env: { REDISHOST: '127.0.0.1', REDISPORT: '0', REDISPASSWORD: PW } },
    ],
    [
      'REDIS_DB=-1 via env',
      { env: { REDIS_HOST: '127.0.0.1', REDIS_PORT: String(closedPort), REDIS_DB: '-1', REDIS_PASSWORD: PW } },
    ],
    [
      'REDIS_TLS=maybe via env',
      { env: { REDIS_HOST: '127.0.0.1', REDIS_PORT: String(closedPort), REDIS_TLS: 'maybe', REDIS_PASSWORD: PW } },
    ],
    ['REDIS_URL with port 99999 via env', { env: { REDIS_URL: `redis://:${PW_ENC}@127.0.0.1:99999` } }],
    ['REDIS_URL with bad scheme via env', { env: { REDIS_URL: `mysql://root:${PW_ENC}@127.0.0.1:3306` } }],
    ['commandTimeoutMs 0', { port: closedPort, password: PW, commandTimeoutMs: 0 }],
    ['commandTimeoutMs -1', { port: closedPort, password: PW, commandTimeoutMs: -1 }],
    ['commandTimeoutMs NaN', { port: closedPort, password: PW, commandTimeoutMs: NaN }],
    ['commandTimeoutMs Infinity', { port: closedPort, password: PW, commandTimeoutMs: Infinity }],
    ['commandTimeoutMs "fast"', { port: closedPort, password: PW, commandTimeoutMs: 'fast' }],
    ['connectTimeoutMs 0', { port: closedPort, password: PW, connectTimeoutMs: 0 }],
    ['maxCommandBuffer -5', { port: closedPort, password: PW, maxCommandBuffer: -5 }],
    [
      'reconnect.minDelayMs > maxDelayMs',
      { port: closedPort, password: PW, reconnect: { minDelayMs: 5000, maxDelayMs: 100 } },
    ],
    ['reconnect as a number', { port: closedPort, password: PW, reconnect: 100 }],
    ['options as an array', [url(closedPort)]],
  ]

  test('at least 20 bad inputs, each one a sync CONFIG error with no secret', () => {
    const all = rows()
    assert.ok(all.length >= 20)
    const secrets = [PW, PW_ENC, 'S3cr3t', KEY_BODY.slice(0, 40), KEY_BODY.slice(-40)]
    const messages = []
    for (const [label, options] of all) {
      // Every row must really carry the password (or the key) somewhere.
      const text = JSON.stringify(options, (k, v) =>
        typeof v === 'function' ? v.toString() : typeof v === 'symbol' ? 'sym' : v,
      )
      assert.ok(text.includes(PW) || text.includes(PW_ENC), `${label}: the row carries no password`)
      const err = assertConfigError(() => new RedisClient(options), secrets, label)
      messages.push(`${label}: ${err.message}`)
    }
    // Messages are specific, not one generic text.
    assert.ok(new Set(messages.map((m) => m.split(': ').slice(1).join(': '))).size > all.length / 2)
  })

  test('non-object arguments are CONFIG errors too', () => {
    const bad = [[], [PW], 42, true, () => PW, Symbol('x')]
    for (const b of bad) {
      assertConfigError(() => new RedisClient(b), [PW], `argument ${typeof b}`)
    }
  })

  test('the env option replaces process.env (a bad process REDIS_URL is not read)', async () => {
    const saved = process.env.REDIS_URL
    process.env.REDIS_URL = `ftp://:${PW_ENC}@nowhere:1`
    try {
      await withClient({ env: { REDIS_HOST: '127.0.0.1', REDIS_PORT: String(closedPort) }, logger: false }, (c) => {
        assert.equal(c.url, `redis://127.0.0.1:${closedPort}`)
      })
      // ...and without `env`, process.env is read: the same bad URL now throws.
      assertConfigError(() => new RedisClient({ logger: false }), [PW, PW_ENC], 'process.env REDIS_URL')
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL
      else process.env.REDIS_URL = saved
    }
  })
})

describe('precedence: options > REDIS_URL > REDIS_HOST/... > Railway names', () => {
  const P = () => closedPort

  test('explicit options beat REDIS_URL and REDIS_HOST', async () => {
    const env = {
      REDIS_URL: `redis://:envpw@127.0.0.2:${P()}/3`,
      REDIS_HOST: '127.0.0.3',
      REDIS_PORT: String(P()),
    }
    await withClient({ url: `redis://127.0.0.4:${P()}`, env, logger: false }, (c) => {
      assert.equal(c.url, `redis://127.0.0.4:${P()}`) // no password, no db: nothing from REDIS_URL
    })
    await withClient({ host: '127.0.0.5', port: P(), env, logger: false }, (c) => {
      assert.equal(c.url, `redis://127.0.0.5:${P()}`)
    })
    // A single explicit field refines the location taken from the environment.
    await withClient(
      { password: 'optpw', env: { REDIS_URL: `redis://:envpw@127.0.0.2:${P()}/3` }, logger: false },
      (c) => {
        assert.equal(c.url, `redis://:***@127.0.0.2:${P()}/3`)
      },
    )
    await withClient({ port: P(), env: {}, logger: false }, (c) => {
      assert.equal(c.url, `redis://127.0.0.1:${P()}`, 'default host is 127.0.0.1')
    })
  })

  test('REDIS_URL beats REDIS_HOST/REDIS_PORT/REDIS_PASSWORD/REDIS_DB', async () => {
    const env = {
      REDIS_URL: `redis://app:${PW_ENC}@127.0.0.2:${P()}/4`,
      REDIS_HOST: '127.0.0.3',
      REDIS_PORT: '1',
      REDIS_PASSWORD: 'other',
      REDIS_DB: '9',
    }
    await withClient({ env, logger: false }, (c) => {
      assert.equal(c.url, `redis://app:***@127.0.0.2:${P()}/4`)
      assert.ok(!c.url.includes(PW) && !c.url.includes(PW_ENC))
    })
    await withClient({ env: { REDIS_URL: `rediss://127.0.0.2:${P()}` }, logger: false }, (c) => {
      assert.equal(c.url, `rediss://127.0.0.2:${P()}`, 'rediss:// turns TLS on')
    })
  })

  test('REDIS_HOST/REDIS_PORT/REDIS_USERNAME/REDIS_PASSWORD/REDIS_DB/REDIS_TLS', async () => {
    await withClient(
      {
        env: {
          REDIS_HOST: '127.0.0.3',
          REDIS_PORT: String(P()),
          REDIS_USERNAME: 'worker',
          REDIS_PASSWORD: PW,
          REDIS_DB: '5',
          REDIS_TLS: 'true',
        },
        logger: false,
      },
      (c) => {
        assert.equal(c.url, `rediss://worker:***@127.0.0.3:${P()}/5`)
      },
    )
    await withClient({ env: { REDIS_PORT: String(P()) }, logger: false }, (c) => {
      assert.equal(c.url, `redis://127.0.0.1:${P()}`, 'REDIS_PORT alone keeps the default host')
    })
    await withClient(
      { env: { REDIS_HOST: '127.0.0.3', REDIS_PORT: String(P()), REDIS_TLS: 'false' }, logger: false },
      (c) => {
        assert.equal(c.url, `redis://127.0.0.3:${P()}`)
      },
    )
    // Empty values count as unset.
    await withClient(
      { env: { REDIS_URL: '', REDIS_HOST: '127.0.0.3', REDIS_PORT: String(P()), REDIS_PASSWORD: '' }, logger: false },
      (c) => {
        assert.equal(c.url, `redis://127.0.0.3:${P()}`)
      },
    )
  })

  test("Railway's REDISHOST/REDISPORT/REDISUSER/REDISPASSWORD, and REDIS_* beats them", async () => {
    await withClient(
      {
        env: { REDISHOST: '127.0.0.6', REDISPORT: String(P()), REDISUSER: 'default', REDISPASSWORD: PW },
        logger: false,
      },
      (c) => {
        assert.equal(c.url, `redis://default:***@127.0.0.6:${P()}`)
      },
    )
    await withClient(
      {
        env: { REDIS_HOST: '127.0.0.7', REDISHOST: '127.0.0.6', REDIS_PORT: String(P()), REDISPORT: '1' },
        logger: false,
      },
      (c) => {
        assert.equal(c.url, `redis://127.0.0.7:${P()}`)
      },
    )
  })

  for (const [label, bad] of [
    ['an unexpanded Railway template', '${{Redis.REDIS_URL}}'],
    ['a bare redis://', 'redis://'],
  ]) {
    test(`REDIS_URL that is ${label} is ignored with exactly one warning`, async () => {
      const lines = []
      const logger = (level, message, fields) => lines.push({ level, message, fields })
      await withClient(
        {
          env: { REDIS_URL: bad, REDISHOST: '127.0.0.6', REDISPORT: String(P()), REDISPASSWORD: PW },
          logger,
        },
        async (c) => {
          assert.equal(c.url, `redis://:***@127.0.0.6:${P()}`, 'falls through to the host variables')
          // Log lines cross a thread-safe function: give them time to arrive, then count.
          await sleep(300)
        },
      )
      await sleep(50)
      const about = lines.filter((l) => /REDIS_URL/.test(l.message))
      assert.equal(about.length, 1, `one warning about REDIS_URL, got ${JSON.stringify(lines)}`)
      assert.equal(about[0].level, 'warn')
      assert.ok(!JSON.stringify(lines).includes(PW))
    })
  }

  test('a template REDIS_URL with nothing else set: warning, then the default location', async () => {
    // Constructing with the default location would dial 127.0.0.1:6379, which tests must not
    // touch: give an explicit port (a field, not a location) so only the host is defaulted.
    const lines = []
    await withClient(
      { port: P(), env: { REDIS_URL: '${{ Redis.REDIS_URL }}' }, logger: (l, m) => lines.push([l, m]) },
      async (c) => {
        assert.equal(c.url, `redis://127.0.0.1:${P()}`)
        await sleep(300)
      },
    )
    assert.equal(lines.filter(([, m]) => /REDIS_URL/.test(m)).length, 1, JSON.stringify(lines))
  })

  test('URL forms: cluster and sentinel are accepted and shown masked', async () => {
    await withClient(
      { url: `redis-cluster://:${PW_ENC}@127.0.0.1:${P()}?node=127.0.0.2:${P()}`, logger: false },
      (c) => {
        assert.equal(c.url, `redis-cluster://:***@127.0.0.1:${P()}?node=127.0.0.2:${P()}`)
      },
    )
    await withClient(
      { url: `redis-sentinel://:${PW_ENC}@127.0.0.1:${P()}?sentinelServiceName=mymaster`, logger: false },
      (c) => {
        assert.match(c.url, /^redis-sentinel:\/\/:\*\*\*@127\.0\.0\.1:\d+\?sentinelServiceName=mymaster$/)
      },
    )
  })
})

describe('credentials in URLs against a real server', () => {
  let server
  const SERVER_PW = 'p@ss'

  before(async () => {
    server = await startRedis({ password: SERVER_PW })
  })
  after(async () => {
    await server?.stop()
  })

  test('percent-encoded p%40ss decodes to p@ss and authenticates', async () => {
    const lines = []
    const url = `redis://:p%40ss@127.0.0.1:${server.port}`
    await withClient({ url, logger: (l, m, f) => lines.push(JSON.stringify([l, m, f])) }, async (c) => {
      assert.equal(c.url, `redis://:***@127.0.0.1:${server.port}`)
      assert.equal(await c.ready(3000), true, 'authenticated with the decoded password')
      const h = await c.healthCheck()
      assert.equal(h.status, 'healthy')
      assert.ok(!JSON.stringify(h).includes('p@ss') && !JSON.stringify(h).includes('p%40ss'))
    })
    assert.ok(!lines.join('\n').includes('p@ss'))
    // Through the environment too, with a user name (`default` is the requirepass user).
    await withClient(
      { env: { REDIS_URL: `redis://default:p%40ss@127.0.0.1:${server.port}` }, logger: false },
      async (c) => {
        assert.equal(c.url, `redis://default:***@127.0.0.1:${server.port}`)
        assert.equal(await c.ready(3000), true)
      },
    )
    // The undecoded form is a different (wrong) password: proves decoding really happens.
    await withClient(
      { url: `redis://:p%2540ss@127.0.0.1:${server.port}`, logger: false, connectTimeoutMs: 1000 },
      async (c) => {
        assert.equal(await c.ready(1500), false)
        assert.equal(c.isAvailable(), false)
      },
    )
  })

  test("new RedisClient('redis://...') string form", async () => {
    // The string form has no logger option: the default logger writes to stderr.
    const orig = process.stderr.write
    const printed = []
    process.stderr.write = function (chunk, ...rest) {
      if (String(chunk).includes('[redis-guard]')) return printed.push(String(chunk)) > 0
      return orig.call(this, chunk, ...rest)
    }
    let c
    try {
      c = new RedisClient(`redis://:p%40ss@127.0.0.1:${server.port}/2`)
      assert.equal(c.url, `redis://:***@127.0.0.1:${server.port}/2`)
      assert.equal(await c.ready(3000), true)
      assert.equal((await c.healthCheck()).status, 'healthy')
      await sleep(100)
    } finally {
      await c?.close()
      process.stderr.write = orig
    }
    assert.ok(
      printed.some((l) => /connected/i.test(l)),
      `default logger line: ${JSON.stringify(printed)}`,
    )
    assert.ok(!printed.join('\n').includes('p@ss'))
    // A malformed URL string throws like the option form.
    assertConfigError(() => new RedisClient(`redis://:${PW_ENC}@127.0.0.1:0`), [PW, PW_ENC], 'string form')
  })
})
