// Section "nest": NestJS 11 (Express platform) with @nestjs/throttler 6's global ThrottlerGuard
// on three storages — redis-guard's `ThrottlerStorageRedisGuard`, @nest-lab/throttler-storage-redis
// on ioredis, and the throttler's default in-memory storage (a reference) — each app in a child
// process (bench/lib/nest-server.mjs), autocannon with 64 connections (bench/lib/frameworks.mjs).

import path from 'node:path'
import { BENCH_DIR } from './common.mjs'
import { runFramework } from './frameworks.mjs'

export const NEST_CONTENDERS = ['redis-guard', 'nest-lab-ioredis', 'nest-memory']

export function runNest(ctx) {
  return runFramework(ctx, {
    name: 'nest',
    title: 'NestJS 11 (Express) + @nestjs/throttler 6',
    script: path.join(BENCH_DIR, 'lib', 'nest-server.mjs'),
    contenders: NEST_CONTENDERS,
    labels: {
      'redis-guard': 'redis-guard `ThrottlerStorageRedisGuard`',
      'nest-lab-ioredis': '@nest-lab/throttler-storage-redis + ioredis',
      'nest-memory': "the throttler's in-memory storage",
    },
    subject: 'redis-guard',
    ratios: [{ peer: 'nest-lab-ioredis', target: 1.3 }, { peer: 'nest-memory' }],
    notes: [
      '',
      'The in-memory storage keeps one expiry time per hit and filters that list on every call, so its cost per request grows with the hits in the window (a limit no run reaches, as here, is its worst case); it is a reference, not a target.',
    ],
  })
}
