// Types of the ES module entry (index.mjs): the same names as index.d.ts, and RedisStore as the
// default export, as rate-limit-redis's is (`import RedisStore from 'redis-guard'`).
export * from './index.js'
import { RedisStore } from './index.js'
export default RedisStore
