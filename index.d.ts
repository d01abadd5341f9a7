// Types of redis-guard's public API. The option and result types documented in Rust (`///`)
// are generated into binding.d.ts by napi-rs and re-exported here; the JavaScript layer
// (lib/) is typed below.

import type {
  RedisClientOptions as NativeClientOptions,
  TlsOptions,
  SentinelOptions,
  ReconnectOptions,
  HealthResult,
} from './binding'

export type { TlsOptions, SentinelOptions, ReconnectOptions, HealthResult }

/** A logger function: called once per state change (connected, unavailable, recovered) and warning. */
export type LogFunction = (
  level: 'error' | 'warn' | 'info' | 'debug',
  message: string,
  fields: Record<string, unknown>,
) => void

/** An object logger such as pino or winston: `logger[level](fields, message)`. */
export interface LoggerObject {
  error(fields: object, message: string): void
  warn(fields: object, message: string): void
  info?(fields: object, message: string): void
  debug?(fields: object, message: string): void
}

/** Options of `new RedisClient()`. All optional; see the README for the full table and defaults. */
export interface RedisClientOptions extends Omit<NativeClientOptions, 'tls'> {
  /** `true` for TLS with the system's roots, or TLS options (PEM text, file paths or Buffers). The default value is `false`. */
  tls?:
    | boolean
    | (Omit<TlsOptions, 'ca' | 'cert' | 'key'> & {
        ca?: string | Buffer
        cert?: string | Buffer
        key?: string | Buffer
      })
  /** `false` to silence, a function, or a pino/winston-like object. The default value prints one line per state change on stderr. */
  logger?: false | LogFunction | LoggerObject
  /** The environment to read instead of `process.env` (tests). The default value is `process.env`. */
  env?: Record<string, string | undefined>
}

/** Stable error codes (`err.code`). */
export declare const codes: {
  readonly CONFIG: 'ERR_REDIS_GUARD_CONFIG'
  readonly TIMEOUT: 'ERR_REDIS_GUARD_TIMEOUT'
  readonly UNAVAILABLE: 'ERR_REDIS_GUARD_UNAVAILABLE'
  readonly REDIS: 'ERR_REDIS_GUARD_REDIS'
  readonly AUTH: 'ERR_REDIS_GUARD_AUTH'
  readonly INVALID_ARG: 'ERR_REDIS_GUARD_INVALID_ARG'
  readonly LOCK_TIMEOUT: 'ERR_REDIS_GUARD_LOCK_TIMEOUT'
  readonly LOCK_LOST: 'ERR_REDIS_GUARD_LOCK_LOST'
  readonly LOCK_NOT_HELD: 'ERR_REDIS_GUARD_LOCK_NOT_HELD'
  readonly ABORTED: 'ERR_REDIS_GUARD_ABORTED'
  readonly CLOSED: 'ERR_REDIS_GUARD_CLOSED'
}
export type ErrorCode = (typeof codes)[keyof typeof codes]

/** Every error redis-guard throws or rejects with. Messages never contain a secret. */
export declare class RedisGuardError extends Error {
  readonly code: ErrorCode
}

/** Health as `healthCheck()` reports it. */
export interface Health {
  status: 'healthy' | 'degraded' | 'unhealthy'
  connected: boolean
  latencyMs: number | null
  url: string
  mode: 'redis' | 'fallback'
  topology: 'standalone' | 'cluster' | 'sentinel'
  error?: string
  /** With `{ deep: true }`: server settings that put limits, locks and caches at risk (README, "Operations"). */
  warnings?: HealthWarning[]
}

/** One warning of a deep health check. */
export interface HealthWarning {
  code:
    | 'EVICTION_POLICY'
    | 'PERSISTENCE_OFF'
    | 'MEMORY_NEAR_LIMIT'
    | 'REPLICATION_LAG'
    | 'NO_REPLICA'
    | 'CLUSTER_STATE'
    | 'OLD_SERVER'
    | 'CHECK_SKIPPED'
  /** What is at risk and how to fix it. */
  message: string
}

/** What to do when Redis cannot be reached, for locks. */
export type LockUnavailablePolicy = 'local' | 'allow' | 'deny'

export interface LockOptions {
  /**
   * Time to live of the lock, in ms: above 0 and at most one year (31536000000 ms; more is
   * `ERR_REDIS_GUARD_INVALID_ARG`); a fractional value is rounded up to the next whole ms. Leases
   * longer than Node's 24.8-day timer limit are timed correctly. The default value is `30000`.
   */
  ttlMs?: number
  /** How long to wait for a held lock, in ms. The default value is `0` (one attempt). */
  waitMs?: number
  /** Base delay between attempts while waiting, in ms (jittered, growing to 4x). The default value is `50`. */
  retryDelayMs?: number
  /** Cancels the wait (rejects with `ERR_REDIS_GUARD_ABORTED`). */
  signal?: AbortSignal
  /** The default value is `'local'`: a process-local lock while Redis is unavailable. */
  onUnavailable?: LockUnavailablePolicy
}

/** A held lock. */
export declare class Lease {
  readonly key: string
  /** The random token that proves ownership. */
  readonly token: string
  /** Fencing token: grows with every grant of this key. Pass it to the resource you protect. */
  readonly fence: number
  /** `redis`, `local` (process-local fallback) or `allow` (not locked: Redis was down and the policy allowed it). */
  readonly source: 'redis' | 'local' | 'allow'
  /** When the lease expires unless extended (ms since the epoch, on the real clock even under fake timers). */
  readonly expiresAt: number
  /** Aborted when the lease is lost. */
  readonly signal: AbortSignal
  /** Whether the lease is still believed held. */
  readonly held: boolean
  /** Extend to `ttlMs` from now: resolves true, or rejects with LOCK_LOST / LOCK_NOT_HELD. */
  extend(ttlMs: number): Promise<true>
  /** Release: true when this lease still held the lock. Never rejects for a lost lock. */
  release(): Promise<boolean>
}

export declare class RedisClient {
  /** Throws `ERR_REDIS_GUARD_CONFIG` for bad configuration; never throws for an unreachable server. */
  constructor(options?: RedisClientOptions | string)
  /** The URL, password masked: `redis://user:***@host:port`. */
  readonly url: string
  /** The command deadline, in ms. */
  readonly commandTimeoutMs: number
  /** The last known connection state, without I/O. */
  isAvailable(): boolean
  /** Resolves true once connected, false after `timeoutMs` (default: the connect timeout). */
  ready(timeoutMs?: number): Promise<boolean>
  /** PING (and with `deep`, SET/GET/DEL of a probe key). Never rejects. */
  healthCheck(options?: { deep?: boolean }): Promise<Health>
  /** An Express handler: 200 with the health JSON when healthy or degraded, 503 when unhealthy. */
  healthHandler(options?: { deep?: boolean }): (req: unknown, res: any, next?: (err?: unknown) => void) => void
  /** This client's metrics as Prometheus text (format 0.0.4): `redis_guard_*` (README, "Operations"). */
  metrics(): string
  /** Add this client's metrics to a prom-client registry (prom-client is an optional peer). */
  registerMetrics(register: { registerMetric(metric: any): void }): void
  /** An Express handler serving `metrics()`. */
  metricsHandler(): (req: unknown, res: any) => void
  /** Counters: timeouts, errors, stateChanges, reconnects, fallbacks. */
  stats(): Record<string, number>
  close(): Promise<void>
  /** Take `key` (Redis key `${lockPrefix}${key}`): a Lease, or null when still held elsewhere after `waitMs`. */
  lock(key: string, options?: LockOptions): Promise<Lease | null>
  /** Run `fn` holding `key`, auto-extending every ttlMs/3 and always releasing. */
  withLock<T>(key: string, options: LockOptions, fn: (signal: AbortSignal) => Promise<T> | T): Promise<T>
  withLock<T>(key: string, fn: (signal: AbortSignal) => Promise<T> | T): Promise<T>
  /**
   * Seed-compatible helper: take `lock:${key}` for `ttlSeconds` (default 30; fractional seconds
   * are rounded up to the next whole ms; at most one year).
   */
  acquireLock(key: string, ttlSeconds?: number, options?: { onUnavailable?: LockUnavailablePolicy }): Promise<boolean>
  /** Seed-compatible helper: release `key` if this process holds it (token-checked). */
  releaseLock(key: string): Promise<boolean>
  /** Seed-compatible helper: extend `key` to `ttlSeconds` from now if this process holds it. */
  extendLock(key: string, ttlSeconds?: number): Promise<boolean>
}

/** What the store does when Redis cannot be reached. */
export type StoreUnavailablePolicy = 'memory' | 'allow' | 'deny'

export interface RedisStoreOptions {
  /** Key prefix; keys are `${prefix}${key}` as with rate-limit-redis. The default value is `'rl:'`. */
  prefix?: string
  /** The client to use. The default value is the default client (built from `REDIS_URL`, ...). */
  client?: RedisClient
  /** A URL for a client of the store's own (closed by `shutdown()`). */
  url?: string
  /** The default value is `'memory'`: a bounded per-process fixed window. */
  onUnavailable?: StoreUnavailablePolicy
  /** Restart the window on every hit (rate-limit-redis's option). The default value is `false`. */
  resetExpiryOnChange?: boolean
  /** Answer keys already over a static `limit` locally until their reset time. The default value is `true`. */
  blockOverLimit?: boolean
  /** Most keys the memory fallback holds. The default value is the client's `fallbackMaxKeys` (100000). */
  fallbackMaxKeys?: number
  /**
   * `'batch'`: the calls of a batch run as one script call (per cluster slot), each key with
   * rate-limit-redis's logic; `'per-key'`: one call of rate-limit-redis's own script per key.
   * Same keys, values and TTLs either way. The default value is `'batch'`.
   */
  scriptMode?: 'batch' | 'per-key'
  /**
   * `'fixed-window'` (rate-limit-redis's counter, wire-compatible), `'sliding-window'` (the
   * previous window weighted by its overlap plus the current one) or `'gcra'` (a smooth rate
   * with bursts up to `limit`; needs a numeric `limit`). The sliding window and GCRA use Redis's
   * clock and do not count refused hits. See the README's "Limits". The default value is
   * `'fixed-window'`.
   */
  algorithm?: LimitAlgorithm
}

/** The rate-limit algorithms. */
export type LimitAlgorithm = 'fixed-window' | 'sliding-window' | 'gcra'

export interface IncrementResponse {
  /** Hits in the current window, an integer >= 1 after `increment`. */
  totalHits: number
  /** When the window ends. */
  resetTime: Date
  /**
   * Who counted it: `redis`, `memory` (the fallback), `allow` (not counted: Redis was down and
   * `onUnavailable` is `'allow'`), or `blocked` (answered in-process: the key is over its limit
   * until `resetTime`, see `blockOverLimit`).
   */
  source: 'redis' | 'memory' | 'allow' | 'blocked'
}

/** An express-rate-limit (v7/v8) store, wire-compatible with rate-limit-redis. */
export declare class RedisStore {
  constructor(options?: RedisStoreOptions)
  readonly prefix: string
  readonly localKeys: boolean
  readonly client: RedisClient
  init(options: { windowMs: number; limit?: unknown; max?: unknown }): void
  get(key: string): Promise<IncrementResponse | undefined>
  increment(key: string): Promise<IncrementResponse>
  decrement(key: string): Promise<void>
  resetKey(key: string): Promise<void>
  resetAll(): Promise<void>
  shutdown(): Promise<void>
  /** Keys the memory fallback holds now. */
  fallbackSize(): number
}

export interface RateLimiterOptions {
  /** Calls (of cost 1) allowed per window: a whole number >= 1. Required: there is no default value. */
  limit: number
  /** The window in ms (GCRA: `limit` per `windowMs` is the rate): a whole number >= 1. Required: there is no default value. */
  windowMs: number
  /** `'fixed-window'`, `'sliding-window'` or `'gcra'` (README, "Limits"). The default value is `'fixed-window'`. */
  algorithm?: LimitAlgorithm
  /** Key prefix (`${prefix}${key}`, `${prefix}sw:${key}`, `${prefix}gcra:${key}`). The default value is `'rl:'`. */
  prefix?: string
  /** GCRA only: calls allowed at once. The default value is `limit`. */
  burst?: number
  /** The client to use. The default value is the default client (built from `REDIS_URL`, ...). */
  client?: RedisClient
  /** A URL for a client of the limiter's own (closed by `close()`). The default value is none: `client`, else the default client. */
  url?: string
  /** `'memory'`: the same algorithm in process, bounded; `'allow'`; `'deny'` (reject). The default value is `'memory'`. */
  onUnavailable?: StoreUnavailablePolicy
  /** Most keys the memory fallback holds. The default value is the client's `fallbackMaxKeys` (100000). */
  fallbackMaxKeys?: number
}

/** The answer of `RateLimiter.limit()` and `get()`. */
export interface LimitResult {
  /** Whether the call passed and was counted (`get`: whether a call of cost 1 would pass). */
  allowed: boolean
  /** The limit. */
  limit: number
  /** Calls of cost 1 that would pass now. */
  remaining: number
  /** When the window ends (fixed, sliding) or the capacity is fully back (gcra). */
  resetTime: Date
  /** 0 when allowed; else ms until this call would pass (`Infinity` when its cost is over the limit). */
  retryAfterMs: number
  /** `redis`, `memory` (the fallback decided) or `allow` (Redis was down and the policy let it pass). */
  source: 'redis' | 'memory' | 'allow'
}

/** A rate limiter without a framework. Refused calls consume nothing. */
export declare class RateLimiter {
  constructor(options: RateLimiterOptions)
  readonly algorithm: LimitAlgorithm
  readonly prefix: string
  readonly windowMs: number
  readonly limitPerWindow: number
  readonly client: RedisClient
  /** Take `cost` (a whole number >= 1; the default value is `1`) from `key`'s allowance. */
  limit(key: string, options?: { cost?: number }): Promise<LimitResult>
  /** The state of `key`, taking nothing. */
  get(key: string): Promise<LimitResult>
  /** Forget `key`. */
  reset(key: string): Promise<void>
  /** Close the client if this limiter created it (`url`). */
  close(): Promise<void>
  fallbackSize(): number
}

/** Options of the framework adapters. */
export interface AdapterOptions {
  /** Key prefix. The default value is `'rl:'`. */
  prefix?: string
  /** The client to use. The default value is the default client (built from `REDIS_URL`, ...). */
  client?: RedisClient
  /** A URL for a client of the adapter's own. The default value is none: `client`, else the default client. */
  url?: string
  /** `'fixed-window'`, `'sliding-window'` or `'gcra'` (README, "Limits"). The default value is `'fixed-window'`. */
  algorithm?: LimitAlgorithm
  /** `'memory'`: the same algorithm in process, bounded; `'allow'`; `'deny'` (the call fails). The default value is `'memory'`. */
  onUnavailable?: StoreUnavailablePolicy
  /** Most keys the memory fallback holds. The default value is the client's `fallbackMaxKeys` (100000). */
  fallbackMaxKeys?: number
}

/** A store of @fastify/rate-limit 11 (the plugin constructs it). */
export declare class FastifyRateLimitStore {
  readonly prefix: string
  incr(
    key: string,
    cb: (err: Error | null, res?: { current: number; ttl: number }) => void,
    timeWindow: number,
    max: number,
  ): void
  read(
    key: string,
    cb: (err: Error | null, res?: { current: number; ttl: number }) => void,
    timeWindow: number,
    max: number,
  ): void
  child(routeOptions: { routeInfo: { method: string; url: string } }): FastifyRateLimitStore
}
/** The `store` option of @fastify/rate-limit 11. */
export declare function fastifyStore(options?: AdapterOptions): new (globalParams?: object) => FastifyRateLimitStore

/** The `storage` option of @nestjs/throttler 6. */
export declare class ThrottlerStorageRedisGuard {
  constructor(options?: AdapterOptions)
  readonly client: RedisClient
  increment(
    key: string,
    ttl: number,
    limit: number,
    blockDuration: number,
    throttlerName: string,
  ): Promise<{ totalHits: number; timeToExpire: number; isBlocked: boolean; timeToBlockExpire: number }>
  onApplicationShutdown(): Promise<void>
}

/** What the query cache does when Redis cannot be reached. */
export type CacheUnavailablePolicy = 'memory' | 'bypass' | 'deny'

/** How values become text and back. */
export interface CacheSerializer {
  stringify(value: unknown): string
  parse(text: string): unknown
}

export interface CacheOptions {
  /** The client to use. The default value is the default client (built from `REDIS_URL`, ...). */
  client?: RedisClient
  /** Key prefix: entries are `${prefix}${key}`. The default value is `'cache:'`. */
  prefix?: string
  /** TTL of an entry set without `ttlMs`, in ms (above 0, at most one year). The default value is `3600000` (one hour). */
  ttlMs?: number
  /**
   * How long after its TTL an entry may still be served by `getOrSet` (when the factory fails,
   * takes longer than `timeoutMs`, or another process is refreshing it), in ms (0 to one year).
   * Such entries are stored in the envelope format (README, "Wire format"). The default value
   * is `0` (no grace: plain entries).
   */
  graceMs?: number
  /**
   * How long `getOrSet` waits for a value — from its own factory, or from another process that
   * holds the key's fill lock — before answering a stale value (within grace) or
   * `ERR_REDIS_GUARD_TIMEOUT`, in ms (at most one hour). Also the TTL of a fill lock, so a
   * process that died holding one is taken over after it. The default value is `5000`.
   */
  timeoutMs?: number
  /**
   * An in-process tier of deserialized values (`true`: the defaults), kept coherent through the
   * channel `${prefix}__rg:changes` (pub/sub) and emptied whenever that channel is interrupted.
   * Values are shared, not copied: do not mutate what `get` returns. The default value is off.
   */
  l1?: boolean | CacheL1Options
  /**
   * `'memory'`: a bounded per-process map while Redis is unavailable; `'bypass'`: misses, writes
   * dropped; `'deny'`: reject with `ERR_REDIS_GUARD_UNAVAILABLE` / `ERR_REDIS_GUARD_TIMEOUT`.
   * The default value is `'memory'`.
   */
  onUnavailable?: CacheUnavailablePolicy
  /** Replaces JSON (`stringify` must return a string). The default value is `JSON`. */
  serializer?: CacheSerializer
  /** Largest serialized value (UTF-8 bytes); larger ones are `ERR_REDIS_GUARD_INVALID_ARG`. The default value is `1048576` (1 MiB). */
  maxValueBytes?: number
  /** Most entries of the memory tier (which also holds at most 64 MiB). The default value is the client's `fallbackMaxKeys` (100000). */
  fallbackMaxKeys?: number
}

/** The L1 of a Cache. */
export interface CacheL1Options {
  /** Most entries, least recently used evicted first. The default value is `10000`. */
  maxKeys?: number
  /** Longest an entry is served from the L1, in ms (never past its Redis TTL). The default value is `60000`. */
  ttlMs?: number
}

/** Options of one write: `set`, `setMany` entries, `getOrSet`. */
export interface CacheWriteOptions {
  /** The entry's TTL in ms. The default value is the cache's `ttlMs`. */
  ttlMs?: number
  /** Grace after the TTL, in ms (see `CacheOptions.graceMs`). The default value is the cache's `graceMs`. */
  graceMs?: number
  /** Tags (at most 64 non-empty strings of at most 1024 characters) for `invalidateTags`. The default value is none. */
  tags?: string[]
}

/** Counters of one Cache in this process. */
export interface CacheStats {
  /** Reads that found a fresh value (in Redis, the memory tier or the L1). */
  hits: number
  /** Reads that found none. */
  misses: number
  /** getOrSet answers served stale, within grace. */
  staleHits: number
  /** Reads the L1 answered (counted in `hits` too). */
  l1Hits: number
  sets: number
  deletes: number
  /** getOrSet factories run in this process. */
  factoryCalls: number
  /** Calls rejected by Redis or the policy, failed factories, entries that did not parse. */
  errors: number
  /** getOrSet calls that got no value within `timeoutMs`. */
  timeouts: number
  /** Answers given without Redis (memory tier or bypass). */
  fallbacks: number
}

/** A query cache: JSON values at `${prefix}${key}` with a TTL (wire-compatible with `SETEX cache:KEY ttl JSON`). */
export declare class Cache {
  constructor(options?: CacheOptions)
  readonly client: RedisClient
  readonly prefix: string
  readonly ttlMs: number
  readonly graceMs: number
  readonly timeoutMs: number
  /** The value, or undefined for a miss (an entry past its TTL, within grace, is a miss here). */
  get<T = unknown>(key: string): Promise<T | undefined>
  /** true when stored (in Redis or the memory tier), false when dropped (`bypass`). */
  set(key: string, value: unknown, options?: CacheWriteOptions): Promise<boolean>
  /**
   * The value; on a miss, `factory()`'s, stored and returned. One factory per key at a time in
   * this process and, while Redis is up, across processes (the others wait up to `timeoutMs`
   * and take over from a holder that died). A factory error rejects its callers and caches
   * nothing. Within grace, a stale value is served when the factory fails or is slow.
   */
  getOrSet<T>(
    key: string,
    factory: () => T | Promise<T>,
    options?: CacheWriteOptions & { timeoutMs?: number },
  ): Promise<T>
  /** The values in order, undefined for misses (one batch). */
  getMany<T = unknown>(keys: string[]): Promise<Array<T | undefined>>
  /** How many were stored (one batch; nothing is sent when one entry is bad). */
  setMany(entries: Array<[string, unknown] | [string, unknown, CacheWriteOptions | undefined]>): Promise<number>
  /** Whether the key holds a fresh value. */
  has(key: string): Promise<boolean>
  /** true when the key held a value. */
  delete(key: string): Promise<boolean>
  /** How many keys held a value. */
  deleteMany(keys: string[]): Promise<number>
  /**
   * Invalidate every entry set with any of `tags`, in every process (one `INCR` per tag, no
   * scan); rejects while Redis is unavailable. Resolves the number of tags.
   */
  invalidateTags(tags: string[]): Promise<number>
  /** Delete every entry of the prefix (SCAN + UNLINK, never KEYS); resolves the number of Redis keys deleted. */
  clear(): Promise<number>
  /**
   * Delete every entry whose key (after the prefix) matches the glob `pattern` (`*`, `?`, `[...]`;
   * the prefix is matched literally): SCAN + UNLINK, never KEYS. Resolves the number of keys deleted.
   */
  deletePattern(pattern: string): Promise<number>
  stats(): CacheStats
  /** Entries the memory tier holds now. */
  fallbackSize(): number
  /** Entries the L1 holds now (0 without `l1`). */
  l1Size(): number
  /** Whether the L1 serves now (it hears every process's changes); false without `l1`. */
  l1Ready(): boolean
  /** Stop the L1's subscriber and empty it (the client stays open). */
  close(): void
}

/** What idempotency keys do when Redis cannot be reached. */
export type IdempotencyUnavailablePolicy = 'deny' | 'memory' | 'allow'

export interface IdempotencyKeysOptions {
  /** The client to use. The default value is the default client (built from `REDIS_URL`, ...). */
  client?: RedisClient
  /** Key prefix: records are `${prefix}${key}`. The default value is `'idem:'`. */
  prefix?: string
  /** How long a completed key keeps its result, in ms (1 ms to one year). The default value is `86400000` (24 h). */
  ttlMs?: number
  /**
   * The lease of an in-progress key, in ms (1 ms to one year): extended every `lockTtlMs / 3`
   * while the claim is held, so a crashed holder blocks its key for at most this long. The
   * default value is `10000`.
   */
  lockTtlMs?: number
  /**
   * `'deny'`: `claim` rejects with `ERR_REDIS_GUARD_UNAVAILABLE` / `ERR_REDIS_GUARD_TIMEOUT`
   * within the command deadline (a payment must not run twice); `'memory'`: the same records in
   * a bounded per-process map (protects retries that reach this process only); `'allow'`:
   * acquired, unprotected, nothing stored. The default value is `'deny'`.
   */
  onUnavailable?: IdempotencyUnavailablePolicy
  /** Turns results into text and back (`stringify` must return a string). The default value is `JSON`. */
  serializer?: CacheSerializer
  /** Most records of the memory tier (which also holds at most 64 MiB). The default value is the client's `fallbackMaxKeys` (100000). */
  fallbackMaxKeys?: number
}

/** The outcome of `IdempotencyKeys.claim`. */
export declare class Claim {
  readonly key: string
  /**
   * `'acquired'`: run the work, then `complete(result)` or `release()`; `'in-progress'`: another
   * holder runs it (retry after `retryAfterMs`); `'completed'`: `result` holds its result;
   * `'mismatch'`: the key was used with another fingerprint.
   */
  readonly state: 'acquired' | 'in-progress' | 'completed' | 'mismatch'
  /** `'redis'`, `'memory'` (process-local records: Redis was unavailable) or `'allow'` (unprotected). */
  readonly source: 'redis' | 'memory' | 'allow'
  /** In progress: the ms the holder's lease has left (at most `lockTtlMs`); 0 otherwise. */
  readonly retryAfterMs: number
  /** Completed: the stored result (undefined otherwise). */
  readonly result: unknown
  /** When the lease ends unless extended, in ms since the epoch. */
  readonly expiresAt: number
  /** Whether this claim still holds its key. */
  readonly held: boolean
  /** Aborted (with an `ERR_REDIS_GUARD_LOCK_LOST` error) when the lease is lost. */
  readonly signal: AbortSignal
  /**
   * Store `result` for `ttlMs` and end the claim (token-checked). Rejects with
   * `ERR_REDIS_GUARD_LOCK_LOST` when the lease was lost and another holder may have taken the
   * key (whose result stays), `ERR_REDIS_GUARD_LOCK_NOT_HELD` when not acquired or already
   * ended, `ERR_REDIS_GUARD_UNAVAILABLE` / `_TIMEOUT` when Redis did not confirm (it is sent
   * again once Redis answers, while the lease lasts).
   */
  complete(result?: unknown): Promise<void>
  /** Give the key back (token-checked): true when this claim still held it. Never rejects. */
  release(): Promise<boolean>
  /** Extend the lease to `lockTtlMs` from now (done every `lockTtlMs / 3` while held). */
  extend(): Promise<boolean>
}

/** Idempotency keys: claim a key, run the work once, store its result for `ttlMs`. */
export declare class IdempotencyKeys {
  constructor(options?: IdempotencyKeysOptions)
  readonly client: RedisClient
  readonly prefix: string
  readonly ttlMs: number
  readonly lockTtlMs: number
  readonly onUnavailable: IdempotencyUnavailablePolicy
  /**
   * Claim `key` (1 to 8192 UTF-8 bytes) with a `fingerprint` of the request (at most 1024
   * bytes; the default value is `''`): one atomic script call.
   */
  claim(key: string, options?: { fingerprint?: string }): Promise<Claim>
  /** Counters of this process since it was made. */
  stats(): IdempotencyStats
  /** Records the memory tier holds now. */
  fallbackSize(): number
}

/** Counters of one IdempotencyKeys (or middleware: `mw.keys.stats()`) in this process. */
export interface IdempotencyStats {
  /** Claims answered. */
  claims: number
  acquired: number
  inProgress: number
  /** Claims of completed keys: replays. */
  completed: number
  mismatches: number
  /** Claims answered without Redis (memory records, or `allow`). */
  fallbacks: number
  /** Claims rejected (Redis unavailable under `'deny'`, bad input that reached Redis). */
  errors: number
  /** Claims whose lease was lost: it expired without an extension, or another holder took the key (their `complete` rejects). */
  lost: number
}

/** Options of the `idempotency` middleware: the IdempotencyKeys options, and these. */
export interface IdempotencyOptions extends Omit<IdempotencyKeysOptions, 'serializer'> {
  /** The request header that carries the key. The default value is `'Idempotency-Key'`. */
  header?: string
  /** Answer `400` when a request of `methods` has no key (else it runs unprotected). The default value is `false`. */
  required?: boolean
  /** The methods the middleware protects (others pass through). The default value is `['POST', 'PATCH']`. */
  methods?: string[]
  /**
   * The scope of a request's key (e.g. the user or the API key), so that one client can never
   * replay another's result: records are `${prefix}${encodeURIComponent(scope)}:${key}`. A
   * promise is awaited. The default value is none (one scope for everyone: records are
   * `${prefix}${key}`).
   */
  scope?: (req: any) => string | number | undefined | null | Promise<string | number | undefined | null>
  /**
   * What makes two requests "the same": a retry with the same key and another fingerprint gets
   * `422`. The default value is the SHA-256 of the method, the URL (`req.originalUrl`) and the
   * body (`req.body`: bytes, text, or JSON of a parsed body).
   */
  fingerprint?: (req: any) => string | Promise<string>
  /**
   * Whether a response with this status is stored (others release the key, so a retry runs the
   * handler again). The default value is `(status) => status < 500` (5xx responses and handler
   * exceptions, which Express answers with 500, are not stored).
   */
  storeResponse?: (status: number) => boolean
  /**
   * The largest body stored, in bytes: a larger response is sent but not stored (its key is
   * released and a warning is logged once). The default value is `1048576` (1 MiB).
   */
  maxBodyBytes?: number
  /**
   * The response headers stored and replayed (lower case). The default value is `['content-type',
   * 'content-language', 'content-location', 'location', 'cache-control', 'etag',
   * 'last-modified', 'vary']`.
   */
  replayHeaders?: string[]
}

/** An Express (or `node:http`) middleware with its IdempotencyKeys as `.keys`. */
export interface IdempotencyMiddleware {
  (req: any, res: any, next: (err?: unknown) => void): void
  readonly keys: IdempotencyKeys
}

/**
 * The `Idempotency-Key` middleware (IETF draft -07): the first request runs the handler and its
 * response is stored; a retry replays it (`Idempotent-Replayed: true`); `400` for a missing
 * (with `required`) or malformed key, `409` + `Retry-After` while the first runs, `422` for the
 * same key on another request, `503` + `Retry-After` when Redis is unavailable (`'deny'`).
 */
export declare function idempotency(options?: IdempotencyOptions): IdempotencyMiddleware

/** rate-limit-redis's form works too: `import RedisStore from 'redis-guard'` (CJS: `require('redis-guard').default`). */
export default RedisStore

/** The process-wide client built from the environment on first use. */
export declare function getDefaultClient(): RedisClient
/** Close the default client (a later call builds a new one). */
export declare function closeDefaultClient(): Promise<void>
/** Whether the default client is connected (sync, no I/O). */
export declare function isRedisAvailable(): boolean
/** Health of the default client. */
export declare function healthCheck(options?: { deep?: boolean }): Promise<Health>
/** An Express handler for the default client's health. */
/** An Express handler serving the default client's metrics (Prometheus text, format 0.0.4). */
export declare function metricsHandler(): (req: unknown, res: any) => void
export declare function healthHandler(options?: {
  deep?: boolean
}): (req: unknown, res: any, next?: (err?: unknown) => void) => void
/** Take `lock:${key}` for `ttlSeconds` (default 30) on the default client. */
export declare function acquireLock(
  key: string,
  ttlSeconds?: number,
  options?: { onUnavailable?: LockUnavailablePolicy },
): Promise<boolean>
/** Release `lock:${key}` if this process holds it. */
export declare function releaseLock(key: string): Promise<boolean>
/** Extend `lock:${key}` if this process holds it. */
export declare function extendLock(key: string, ttlSeconds?: number): Promise<boolean>
/** The value at `cache:${key}` on the default client, or undefined. */
export declare function cacheGet<T = unknown>(key: string): Promise<T | undefined>
/** Store `value` (JSON) at `cache:${key}` for `ttlSeconds` on the default client. The default value of `ttlSeconds` is `3600`. */
export declare function cacheSet(key: string, value: unknown, ttlSeconds?: number): Promise<boolean>
/** Delete `cache:${key}` on the default client: true when it held a value. */
export declare function cacheDelete(key: string): Promise<boolean>
/** Delete every `cache:${pattern}` key on the default client (SCAN + UNLINK, never KEYS): the number deleted. */
export declare function cacheDeletePattern(pattern: string): Promise<number>
