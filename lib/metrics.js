'use strict'
// Metrics of a client, as Prometheus text (format 0.0.4) or as prom-client metrics.
//
// Two sources, read at scrape time only:
// - Rust (`metricsJson`): what the batch core counts for every feature by its `Feature::NAME`
//   (calls, fallbacks, errors), the round trip of every batch, and the connection's counters;
// - JS (`Meter`): what only a feature knows (a rate-limit result's source, a lock granted or
//   contended, a cache hit). A feature gets its counters with `client._meter.for(feature)`
//   and adds to them; it declares their names and help once in `FAMILIES` below.
// The rule for a new feature (README, "Operations"): ride the batch core (its calls, fallbacks
// and errors are then counted under its `Feature::NAME`), and add its own decisions as one
// `FAMILIES` entry named `redis_guard_<feature>_<what>_total` with at most one label.

/** Counters kept by the JS half of each feature of one client. */
class Meter {
  constructor() {
    this.rateLimit = { redis: 0, memory: 0, allow: 0, blocked: 0 }
    this.rateLimitDecisions = { allowed: 0, denied: 0 }
    this.lockGrants = { redis: 0, local: 0, allow: 0 }
    this.lock = { contended: 0, lost: 0 }
    this.cache = { hits: 0, misses: 0, staleHits: 0, l1Hits: 0, factoryCalls: 0, timeouts: 0 }
    this.idempotency = { acquired: 0, replayed: 0, inProgress: 0, mismatch: 0, lost: 0 }
  }
}

/**
 * The metric families: name, help, type, and how to read their samples from the Rust snapshot
 * `s` and the meter `m`: `[labels, value]` pairs.
 * @type {Array<{ name: string, help: string, type: 'counter' | 'gauge', samples: (s: any, m: Meter) => Array<[Record<string, string>, number]> }>}
 */
const FAMILIES = [
  {
    name: 'redis_guard_up',
    help: 'Whether the client sends calls to Redis (1) or its features answer from their fallback (0).',
    type: 'gauge',
    samples: (s) => [[{}, s.connection.up ? 1 : 0]],
  },
  {
    name: 'redis_guard_calls_total',
    help: 'Calls of each feature (one per increment, lock operation, cache operation).',
    type: 'counter',
    samples: (s) => perFeature(s, 'calls'),
  },
  {
    name: 'redis_guard_batches_total',
    help: 'Batches each feature sent (the calls of one event-loop turn cross to Rust and Redis together).',
    type: 'counter',
    samples: (s) => perFeature(s, 'batches'),
  },
  {
    name: 'redis_guard_fallbacks_total',
    help: 'Calls of each feature answered by its onUnavailable policy instead of Redis.',
    type: 'counter',
    samples: (s) => perFeature(s, 'fallbacks'),
  },
  {
    name: 'redis_guard_call_errors_total',
    help: 'Calls of each feature that failed (typed errors given to the caller).',
    type: 'counter',
    samples: (s) => perFeature(s, 'errors'),
  },
  {
    name: 'redis_guard_timeouts_total',
    help: 'Calls that met the command deadline.',
    type: 'counter',
    samples: (s) => [[{}, s.connection.timeouts]],
  },
  {
    name: 'redis_guard_reconnects_total',
    help: 'Connections (re)established.',
    type: 'counter',
    samples: (s) => [[{}, s.connection.reconnects]],
  },
  {
    name: 'redis_guard_state_changes_total',
    help: 'Changes of the connection state (up, down, connecting).',
    type: 'counter',
    samples: (s) => [[{}, s.connection.stateChanges]],
  },
  {
    name: 'redis_guard_orphan_locks_removed_total',
    help: 'Locks that Redis granted after the client had given up on them, deleted once it answered.',
    type: 'counter',
    samples: (s) => [[{}, s.connection.orphansRemoved]],
  },
  {
    name: 'redis_guard_rate_limit_increments_total',
    help: 'Rate-limit increments by who counted them: redis, memory (fallback), allow (not counted), blocked (locally blocked key).',
    type: 'counter',
    samples: (s, m) => labelled('source', m.rateLimit),
  },
  {
    name: 'redis_guard_rate_limit_decisions_total',
    help: 'Rate-limit decisions of RateLimiter.limit() and the Fastify and NestJS stores: allowed, denied.',
    type: 'counter',
    samples: (s, m) => labelled('outcome', m.rateLimitDecisions),
  },
  {
    name: 'redis_guard_lock_grants_total',
    help: 'Locks granted, by who granted them: redis, local (fallback), allow (not locked).',
    type: 'counter',
    samples: (s, m) => labelled('source', m.lockGrants),
  },
  {
    name: 'redis_guard_lock_contended_total',
    help: 'Lock attempts that found the lock held.',
    type: 'counter',
    samples: (s, m) => [[{}, m.lock.contended]],
  },
  {
    name: 'redis_guard_lock_lost_total',
    help: 'Leases lost (expired without extension, or taken over).',
    type: 'counter',
    samples: (s, m) => [[{}, m.lock.lost]],
  },
  {
    name: 'redis_guard_cache_reads_total',
    help: 'Cache reads by result: hit, miss, stale (served within grace by getOrSet), l1 (answered in process; also a hit).',
    type: 'counter',
    samples: (s, m) =>
      labelled('result', { hit: m.cache.hits, miss: m.cache.misses, stale: m.cache.staleHits, l1: m.cache.l1Hits }),
  },
  {
    name: 'redis_guard_cache_factory_calls_total',
    help: 'getOrSet factories run.',
    type: 'counter',
    samples: (s, m) => [[{}, m.cache.factoryCalls]],
  },
  {
    name: 'redis_guard_cache_timeouts_total',
    help: 'getOrSet calls that got no value within timeoutMs.',
    type: 'counter',
    samples: (s, m) => [[{}, m.cache.timeouts]],
  },
  {
    name: 'redis_guard_idempotency_claims_total',
    help: 'Idempotency-key claims by result: acquired (the work runs), replayed (a completed key: its result is returned), in_progress (a 409), mismatch (a 422).',
    type: 'counter',
    samples: (s, m) =>
      labelled('result', {
        acquired: m.idempotency.acquired,
        replayed: m.idempotency.replayed,
        in_progress: m.idempotency.inProgress,
        mismatch: m.idempotency.mismatch,
      }),
  },
  {
    name: 'redis_guard_idempotency_lost_total',
    help: 'Idempotency-key leases lost (expired without an extension, or taken over): their results are not stored.',
    type: 'counter',
    samples: (s, m) => [[{}, m.idempotency.lost]],
  },
]

const ROUND_TRIP = {
  name: 'redis_guard_round_trip_seconds',
  help: 'Redis round trip of each batch (all its script calls), in seconds.',
}

/** @returns {Array<[Record<string, string>, number]>} */
function perFeature(s, field) {
  return Object.entries(s.features)
    .filter(([name]) => name !== 'echo')
    .map(([name, f]) => /** @type {[Record<string, string>, number]} */ ([{ feature: name }, f[field]]))
}

/** @returns {Array<[Record<string, string>, number]>} */
function labelled(label, counts) {
  return Object.entries(counts).map(([v, n]) => /** @type {[Record<string, string>, number]} */ ([{ [label]: v }, n]))
}

const escapeLabel = (v) => String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
const labelText = (labels) => {
  const e = Object.entries(labels)
  return e.length ? `{${e.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : ''
}

/** The client's metrics as Prometheus text (format 0.0.4). */
function text(client) {
  const s = JSON.parse(client._native.metricsJson())
  const m = client._meter
  const out = []
  for (const f of FAMILIES) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`)
    for (const [labels, value] of f.samples(s, m)) out.push(`${f.name}${labelText(labels)} ${value}`)
  }
  const r = s.roundTrip
  out.push(`# HELP ${ROUND_TRIP.name} ${ROUND_TRIP.help}`, `# TYPE ${ROUND_TRIP.name} histogram`)
  r.le.forEach((le, i) => out.push(`${ROUND_TRIP.name}_bucket{le="${le}"} ${r.counts[i]}`))
  out.push(
    `${ROUND_TRIP.name}_bucket{le="+Inf"} ${r.counts[r.counts.length - 1]}`,
    `${ROUND_TRIP.name}_sum ${r.sumSeconds}`,
    `${ROUND_TRIP.name}_count ${r.count}`,
  )
  return `${out.join('\n')}\n`
}

/**
 * Add the client's metrics to a prom-client registry: each family as a metric object that
 * prom-client reads at scrape time (`get()`), so nothing is copied between scrapes.
 * @param {import('./client.js').RedisClient} client
 * @param {{ registerMetric(m: any): void }} registry a prom-client `Registry` (e.g. `register`)
 */
function register(client, registry) {
  if (!registry || typeof registry.registerMetric !== 'function')
    throw new TypeError('registerMetrics(register) needs a prom-client Registry')
  const snap = () => JSON.parse(client._native.metricsJson())
  for (const f of FAMILIES) {
    registry.registerMetric({
      name: f.name,
      help: f.help,
      type: f.type,
      aggregator: 'sum',
      get: async () => ({
        name: f.name,
        help: f.help,
        type: f.type,
        aggregator: 'sum',
        values: f.samples(snap(), client._meter).map(([labels, value]) => ({ labels, value })),
      }),
      reset() {},
    })
  }
  registry.registerMetric({
    name: ROUND_TRIP.name,
    help: ROUND_TRIP.help,
    type: 'histogram',
    aggregator: 'sum',
    get: async () => {
      const r = snap().roundTrip
      return {
        name: ROUND_TRIP.name,
        help: ROUND_TRIP.help,
        type: 'histogram',
        aggregator: 'sum',
        values: [
          ...r.le.map((le, i) => ({ metricName: `${ROUND_TRIP.name}_bucket`, labels: { le }, value: r.counts[i] })),
          { metricName: `${ROUND_TRIP.name}_bucket`, labels: { le: '+Inf' }, value: r.counts[r.counts.length - 1] },
          { metricName: `${ROUND_TRIP.name}_sum`, labels: {}, value: r.sumSeconds },
          { metricName: `${ROUND_TRIP.name}_count`, labels: {}, value: r.count },
        ],
      }
    },
    reset() {},
  })
}

/** An Express (or node:http) handler serving `client`'s metrics. */
function handler(getClient) {
  return (req, res) => {
    res.statusCode = 200
    res.setHeader('content-type', 'text/plain; version=0.0.4; charset=utf-8')
    res.setHeader('cache-control', 'no-store')
    res.end(text(getClient()))
  }
}

module.exports = { Meter, FAMILIES, text, register, handler }
