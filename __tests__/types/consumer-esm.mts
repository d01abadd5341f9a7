// An ES module TypeScript consumer (resolves the "import" condition of the exports map).
import express from 'express'
import { rateLimit, type Store } from 'express-rate-limit'
// rate-limit-redis's default-import form.
import DefaultStore, { RedisStore, RedisClient, Cache, cacheGet } from 'redis-guard'

const client = new RedisClient({ url: 'redis://127.0.0.1:6380', logger: false })
const store: Store = new RedisStore({ client })
const viaDefault: Store = new DefaultStore({ client, prefix: 'd:' })
const app = express()
app.use(rateLimit({ windowMs: 60_000, limit: 5, store }))

const cache = new Cache({ client })
const cached: Promise<unknown> = cache.get('k').then(() => cacheGet('k'))

export { app, viaDefault, cached }
