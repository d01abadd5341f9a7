// Child process of the "nest" section: a NestJS 11 app (@nestjs/platform-express) with
// @nestjs/throttler 6's ThrottlerGuard as a global guard on one storage contender, `GET /`
// answering a small text. Built without decorator transpilation, as __tests__/adapters.test.mjs
// does: the decorators are called as functions.
// argv[2] = JSON { contender: 'redis-guard' | 'nest-lab-ioredis' | 'nest-memory', url, prefix }.
// IPC (bench/lib/app.mjs's protocol): sends { type: 'ready', port } once listening; answers
// 'stats' with this process's CPU and the storage's counters; on 'close' closes the app and the
// contender's client, then exits by itself.

import 'reflect-metadata'

import { createRequire } from 'node:module'
import { params as p, serveParent } from './app-child.mjs'
import { countCrossings } from './common.mjs'

const require = createRequire(import.meta.url)
const { Controller, Get, Module } = require('@nestjs/common')
const { APP_GUARD, NestFactory } = require('@nestjs/core')
const { ThrottlerGuard, ThrottlerModule } = require('@nestjs/throttler')

// redis-guard diagnostics: JS→Rust crossings (batch submissions) and calls per crossing.
const diag = { batches: 0, items: 0 }

let storage
let stats = () => ({})
let close = async () => {}
if (p.contender === 'redis-guard') {
  // As the README wires it: `storage: new ThrottlerStorageRedisGuard({ ... })`.
  const { RedisClient, ThrottlerStorageRedisGuard } = require('../../index.js')
  const client = new RedisClient({ url: p.url, logger: false })
  await client.ready(5000)
  storage = new ThrottlerStorageRedisGuard({ client, prefix: p.prefix })
  countCrossings(storage._batch.native, diag)
  stats = () => client.stats()
  close = () => client.close()
} else if (p.contender === 'nest-lab-ioredis') {
  // @nest-lab/throttler-storage-redis, as its README wires it: `new ThrottlerStorageRedisService(redis)`.
  const { Redis } = require('ioredis')
  const { ThrottlerStorageRedisService } = require('@nest-lab/throttler-storage-redis')
  const redis = new Redis(p.url, { keyPrefix: p.prefix, connectTimeout: 500, maxRetriesPerRequest: 1 })
  redis.on('error', () => {})
  await new Promise((resolve) => redis.once('ready', resolve))
  storage = new ThrottlerStorageRedisService(redis)
  close = () => redis.quit().catch(() => {})
} else if (p.contender !== 'nest-memory') {
  throw new Error(`unknown nest contender ${p.contender}`)
} // nest-memory: no `storage`, the throttler's own ThrottlerStorageService (in this process)

class AppController {
  hello() {
    return 'ok'
  }
}
const proto = AppController.prototype
Get('/')(proto, 'hello', Object.getOwnPropertyDescriptor(proto, 'hello'))
Controller()(AppController)
class AppModule {}
Module({
  imports: [
    ThrottlerModule.forRoot({
      // A limit no run reaches: every request is a storage decision, none is a 429. The
      // guard's default block duration (its ttl) applies, as in an app that sets none.
      throttlers: [{ ttl: 60_000, limit: 1e9 }],
      ...(storage ? { storage } : {}),
      // One key per client connection (64 keys under autocannon -c 64), as the http section does.
      getTracker: (req) => `c:${req.socket.remotePort}`,
    }),
  ],
  controllers: [AppController],
  providers: [{ provide: APP_GUARD, useClass: ThrottlerGuard }],
})(AppModule)

const app = await NestFactory.create(AppModule, { logger: false })
await app.listen(0, '127.0.0.1')
const server = app.getHttpServer()
server.keepAliveTimeout = 65_000
serveParent(server.address().port, {
  stats: () => ({ storeStats: stats(), storeErrors: 0, diag: { ...diag } }),
  close: async () => {
    server.closeAllConnections()
    await app.close()
    await close()
  },
})
