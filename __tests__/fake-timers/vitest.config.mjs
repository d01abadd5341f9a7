// Vitest 3 for __tests__/fake-timers.test.mjs: the two *.vitest.mjs bodies, each in its own
// forked process; Vite's cache outside the repository.
import os from 'node:os'
import path from 'node:path'

export default {
  cacheDir: path.join(os.tmpdir(), 'redis-guard-fake-timers-vite'),
  test: {
    include: ['*.vitest.mjs'],
    pool: 'forks',
    testTimeout: 20000,
    hookTimeout: 20000,
  },
}
