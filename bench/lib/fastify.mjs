// Section "fastify": Fastify 5 with @fastify/rate-limit 11 on three stores — redis-guard's
// `fastifyStore()`, the plugin's own Redis store on ioredis (`redis: new Redis(url)`) and its
// default in-memory store — each app in a child process (bench/lib/fastify-server.mjs),
// autocannon with 64 connections (bench/lib/frameworks.mjs).

import path from 'node:path'
import { BENCH_DIR } from './common.mjs'
import { runFramework } from './frameworks.mjs'

export const FASTIFY_CONTENDERS = ['redis-guard', 'plugin-ioredis', 'plugin-memory']

export function runFastify(ctx) {
  return runFramework(ctx, {
    name: 'fastify',
    title: 'Fastify 5 + @fastify/rate-limit 11',
    script: path.join(BENCH_DIR, 'lib', 'fastify-server.mjs'),
    contenders: FASTIFY_CONTENDERS,
    labels: {
      'redis-guard': 'redis-guard `fastifyStore()`',
      'plugin-ioredis': "the plugin's Redis store + ioredis",
      'plugin-memory': "the plugin's in-memory store",
    },
    subject: 'redis-guard',
    ratios: [
      { peer: 'plugin-ioredis', target: 1.3 },
      { peer: 'plugin-memory', target: 0.95 },
    ],
  })
}
