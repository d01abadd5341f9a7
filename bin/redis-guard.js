#!/usr/bin/env node
'use strict'
// The redis-guard command line: `npx redis-guard <command>` (README, "Operations").
// Arguments are parsed by commander; long scans show a cli-progress bar on stderr when it is a
// terminal. Exit codes: 0 all is well, 1 it is not (unhealthy, warnings, a failed step), 2 a
// usage error. Configuration as the library's: `--url`, else REDIS_URL and the other variables.

const fs = require('node:fs')
const readline = require('node:readline')
const { Command, CommanderError, Option } = require('commander')

const EXIT_OK = 0
const EXIT_FAIL = 1
const EXIT_USAGE = 2
const DEFAULT_PREFIXES = ['rl:', 'lock:', 'cache:', 'idem:']

/** A usage error (exit 2). */
class UsageError extends Error {}

function lib() {
  return require('../index.js')
}

/** A connected client for `opts` (global options); exit 1 when it cannot connect. */
async function connect(opts) {
  const { RedisClient } = lib()
  const client = new RedisClient({ ...(opts.url ? { url: opts.url } : {}), logger: false })
  if (!(await client.ready())) {
    const h = await client.healthCheck()
    await client.close()
    const e = new Error(`cannot connect to ${h.url}: ${h.error || 'no answer'}`)
    e.exitCode = EXIT_FAIL
    throw e
  }
  return client
}

/** Print `data` as JSON (`--json`) or as `text()`. */
function print(opts, data, text) {
  process.stdout.write(opts.json ? `${JSON.stringify(data, null, 2)}\n` : `${text()}\n`)
}

/** A progress reporter on stderr (a bar on a terminal, nothing otherwise). */
function progress(label, total) {
  if (!process.stderr.isTTY) return { update() {}, stop() {} }
  const { SingleBar, Presets } = require('cli-progress')
  const bar = new SingleBar(
    { format: `${label} [{bar}] {value}/{total} keys`, stream: process.stderr, hideCursor: true },
    Presets.shades_classic,
  )
  bar.start(Math.max(1, total), 0)
  return {
    update: (n) => bar.update(Math.min(n, Math.max(1, total))),
    stop: () => bar.stop(),
  }
}

/** Keys on the server (every primary), from INFO keyspace: the bar's total. */
async function keyCount(client) {
  const info = await client._native.serverInfo()
  let n = 0
  for (const m of info.matchAll(/^db\d+:keys=(\d+)/gm)) n += Number(m[1])
  return n
}

const fmtMs = (ms) =>
  ms === null || ms === undefined
    ? '–'
    : ms >= 86_400_000
      ? `${(ms / 86_400_000).toFixed(1)} d`
      : ms >= 3_600_000
        ? `${(ms / 3_600_000).toFixed(1)} h`
        : ms >= 60_000
          ? `${(ms / 60_000).toFixed(1)} min`
          : `${(ms / 1000).toFixed(1)} s`
const fmtBytes = (b) =>
  b >= 1 << 30
    ? `${(b / 2 ** 30).toFixed(1)} GiB`
    : b >= 1 << 20
      ? `${(b / 2 ** 20).toFixed(1)} MiB`
      : b >= 1024
        ? `${(b / 1024).toFixed(1)} KiB`
        : `${b} B`

function table(head, rows) {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (r) => r.map((c, i) => String(c).padEnd(w[i])).join('  ')
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n')
}

/** Ask a yes/no question on stderr; resolves true for y / yes. */
function confirm(question) {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr })
    let answered = false
    rl.question(question, (a) => {
      answered = true
      rl.close()
      resolve(/^y(es)?$/i.test(a.trim()))
    })
    rl.on('close', () => {
      if (!answered) resolve(false)
    })
  })
}

// ---- commands ------------------------------------------------------------------------------

async function health(opts, cmd) {
  const { RedisClient } = lib()
  const c = new RedisClient({ ...(opts.url ? { url: opts.url } : {}), logger: false })
  try {
    await c.ready()
    const h = await c.healthCheck({ deep: !!cmd.deep })
    const risky = (h.warnings ?? []).filter((w) => w.code !== 'CHECK_SKIPPED')
    print(opts, h, () =>
      [
        `${h.status} · ${h.url} · ${h.topology} · ${h.latencyMs === null ? 'no answer' : `${h.latencyMs} ms`}`,
        ...(h.error ? [`error: ${h.error}`] : []),
        ...(h.warnings ?? []).map((w) => `${w.code}: ${w.message}`),
      ].join('\n'),
    )
    return h.status === 'healthy' && risky.length === 0 ? EXIT_OK : EXIT_FAIL
  } finally {
    await c.close()
  }
}

async function stats(opts, cmd) {
  const client = await connect(opts)
  try {
    const prefixes = cmd.prefix && cmd.prefix.length ? cmd.prefix : DEFAULT_PREFIXES
    const bar = progress('scanning', await keyCount(client))
    let s
    try {
      s = await client._native.scanStats(prefixes, Number(cmd.sample), (n) => bar.update(n))
    } finally {
      bar.stop()
    }
    print(opts, s, () =>
      [
        `${s.scanned} keys scanned`,
        table(
          ['prefix', 'keys', 'memory (est.)', 'TTL min', 'TTL max', 'no TTL'],
          s.prefixes.map((p) => [
            p.prefix === '' ? '(other)' : p.prefix,
            p.keys,
            fmtBytes(p.memoryBytes),
            fmtMs(p.ttlMinMs),
            fmtMs(p.ttlMaxMs),
            p.withoutTtl,
          ]),
        ),
      ].join('\n'),
    )
    return EXIT_OK
  } finally {
    await client.close()
  }
}

/** Glob characters escaped, as `SCAN MATCH` reads them. */
const globEscape = (s) => s.replace(/[*?[\]\\]/g, (c) => `\\${c}`)

async function clear(opts, cmd) {
  if (typeof cmd.prefix !== 'string' || cmd.prefix.length === 0)
    throw new UsageError('clear needs a non-empty --prefix (it never clears the whole database)')
  const pattern = `${globEscape(cmd.prefix)}${cmd.pattern ?? '*'}`
  const client = await connect(opts)
  try {
    const total = await keyCount(client)
    if (!cmd.dryRun && !cmd.yes) {
      const n = await client._native.deleteMatching(pattern, true)
      if (n === 0) {
        print(opts, { pattern, deleted: 0 }, () => `no key matches ${pattern}`)
        return EXIT_OK
      }
      if (!(await confirm(`delete ${n} keys matching ${pattern}? [y/N] `))) {
        print(opts, { pattern, deleted: 0, aborted: true }, () => 'aborted: nothing deleted')
        return EXIT_FAIL
      }
    }
    const bar = progress(cmd.dryRun ? 'counting' : 'deleting', total)
    let n
    try {
      n = await client._native.deleteMatching(pattern, !!cmd.dryRun, (k) => bar.update(k))
    } finally {
      bar.stop()
    }
    print(opts, cmd.dryRun ? { pattern, matched: n, dryRun: true } : { pattern, deleted: n }, () =>
      cmd.dryRun ? `${n} keys match ${pattern} (dry run: nothing deleted)` : `${n} keys deleted (${pattern})`,
    )
    return EXIT_OK
  } finally {
    await client.close()
  }
}

async function warm(opts, file, cmd) {
  let text
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${e.message}`)
  }
  const client = await connect(opts)
  try {
    const cache = new (lib().Cache)({ client, prefix: cmd.prefix })
    const bad = []
    const entries = []
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return
      try {
        const e = JSON.parse(line)
        if (e === null || typeof e !== 'object' || typeof e.key !== 'string' || !('value' in e))
          throw new Error('needs {"key": string, "value": ...}')
        entries.push([e.key, e.value, { ttlMs: e.ttlMs, tags: e.tags }])
      } catch (err) {
        bad.push({ line: i + 1, error: String(err.message) })
      }
    })
    let stored = 0
    for (let i = 0; i < entries.length; i += 500) {
      const chunk = entries.slice(i, i + 500)
      try {
        stored += await cache.setMany(/** @type {any} */ (chunk))
      } catch {
        // One bad entry refuses the chunk: store its entries one by one to tell which.
        for (const [k, v, o] of chunk) {
          try {
            if (await cache.set(k, v, o)) stored++
          } catch (err) {
            bad.push({ key: k, error: `${err.code}: ${err.message}` })
          }
        }
      }
    }
    print(opts, { stored, bad }, () =>
      [`${stored} entries stored under ${cmd.prefix}`, ...bad.map((b) => `skipped ${JSON.stringify(b)}`)].join('\n'),
    )
    return bad.length ? EXIT_FAIL : EXIT_OK
  } finally {
    await client.close()
  }
}

async function locks(opts, cmd) {
  const client = await connect(opts)
  try {
    const held = await client._native.heldLocks(cmd.prefix, Number(cmd.limit))
    print(opts, held, () =>
      held.length
        ? table(
            ['lock', 'TTL left', 'fence'],
            held.map((l) => [l.key, fmtMs(l.ttlMs), l.fence ?? '–']),
          )
        : 'no lock held',
    )
    return EXIT_OK
  } finally {
    await client.close()
  }
}

async function monitor(opts, cmd) {
  const client = await connect(opts)
  const interval = Number(cmd.interval)
  const count = cmd.count === undefined ? Infinity : Number(cmd.count)
  let stop = false
  process.once('SIGINT', () => (stop = true))
  try {
    for (let i = 0; i < count && !stop; i++) {
      const [info, h] = await Promise.all([client._native.serverInfo(), client.healthCheck()])
      const sum = (k) => [...info.matchAll(new RegExp(`^${k}:(\\d+)`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0)
      const row = {
        time: new Date().toISOString(),
        status: h.status,
        latencyMs: h.latencyMs,
        opsPerSec: sum('instantaneous_ops_per_sec'),
        clients: sum('connected_clients'),
        usedMemory: sum('used_memory'),
        keys: [...info.matchAll(/^db\d+:keys=(\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0),
        client: client.stats(),
      }
      process.stdout.write(
        opts.json
          ? `${JSON.stringify(row)}\n`
          : `${row.time}  ${row.status}  ${row.latencyMs ?? '–'} ms  ${row.opsPerSec} ops/s  ${row.clients} clients  ${fmtBytes(row.usedMemory)}  ${row.keys} keys  fallbacks ${row.client.fallbacks}  timeouts ${row.client.timeouts}\n`,
      )
      if (i + 1 < count && !stop) await new Promise((r) => setTimeout(r, interval))
    }
    return EXIT_OK
  } finally {
    await client.close()
  }
}

// ---- the program ---------------------------------------------------------------------------

function program() {
  const p = new Command('redis-guard')
  p.description(
    'Operate the Redis behind redis-guard: health, keys per feature, clearing, warming, locks, live figures.',
  )
    .option('--url <url>', 'Redis URL (default: REDIS_URL and the library’s other variables)')
    .option('--json', 'machine-readable output on stdout')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
  const run = (fn) =>
    async function (...args) {
      const cmd = this
      process.exitCode = await fn(cmd.optsWithGlobals(), ...args.slice(0, -2), cmd.opts())
    }
  p.command('health')
    .description('PING and, with --deep, the settings that put limits, locks and caches at risk; exit 1 unless healthy')
    .option('--deep', 'also check eviction policy, persistence, memory, replication, cluster state, version')
    .action(run(health))
  p.command('stats')
    .description('keys, estimated memory and TTLs per prefix, in one SCAN of every primary')
    .option('--prefix <prefix...>', `prefixes (default: ${DEFAULT_PREFIXES.join(' ')})`)
    .addOption(new Option('--sample <n>', 'MEMORY USAGE for one key in n').default('20'))
    .action(run(stats))
  p.command('clear')
    .description('delete the keys under a prefix (SCAN + UNLINK, never KEYS or FLUSHALL); asks first unless --yes')
    .requiredOption('--prefix <prefix>', 'the prefix (required, non-empty)')
    .option('--pattern <glob>', 'a SCAN MATCH glob after the prefix (default: *)')
    .option('--dry-run', 'count only')
    .option('--yes', 'do not ask')
    .action(run(clear))
  p.command('warm')
    .description('store NDJSON entries {"key","value","ttlMs"?,"tags"?} in the cache')
    .argument('<file>', 'an NDJSON file')
    .addOption(new Option('--prefix <prefix>', 'the cache prefix').default('cache:'))
    .action(run(warm))
  p.command('locks')
    .description('the locks held: key, TTL left, last fencing token')
    .option('--prefix <prefix>', 'the lock prefix (default: the client’s lockPrefix, lock:)')
    .addOption(new Option('--limit <n>', 'at most n').default('1000'))
    .action(run(locks))
  p.command('monitor')
    .description('one line of live figures every interval (ops/s, latency, memory, keys, this client’s fallbacks)')
    .addOption(new Option('--interval <ms>', 'between lines').default('1000'))
    .option('--count <n>', 'stop after n lines (default: until Ctrl-C)')
    .action(run(monitor))
  return p
}

async function main(argv) {
  const p = program()
  try {
    await p.parseAsync(argv)
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? EXIT_OK : EXIT_USAGE
    } else if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n`)
      process.exitCode = EXIT_USAGE
    } else {
      process.stderr.write(`error: ${e && e.code ? `${e.code}: ` : ''}${e && e.message}\n`)
      process.exitCode = e && e.exitCode !== undefined ? e.exitCode : EXIT_FAIL
    }
  }
}

if (require.main === module) main(process.argv)

module.exports = { main, program }
