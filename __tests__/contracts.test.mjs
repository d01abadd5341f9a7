// The contract bodies (__tests__/contracts/: client, store, locks, cache, idempotency) on every
// topology of __tests__/helpers/topologies.mjs: standalone, a 3-primary cluster, a sentinel set and a
// TLS-only server. Each deployment is started once, every body runs against it, then it is
// stopped. A new feature's body is added in __tests__/contracts/index.mjs (one import, one line).
// Start-up and run times per topology are printed as `TIMING <name> <json>` lines.
// Run: node --test __tests__/contracts.test.mjs

import { after, afterEach, before, describe, test } from 'node:test'

import { registerContracts } from './contracts/index.mjs'
import { TOPOLOGIES } from './helpers/topologies.mjs'

for (const topology of TOPOLOGIES) {
  describe(`contracts on ${topology.name}`, () => {
    let deployment
    const timing = {}
    let t0
    before(async () => {
      t0 = Date.now()
      deployment = await topology.start()
      timing.startMs = Date.now() - t0
    })
    after(async () => {
      const t1 = Date.now()
      await deployment?.stop()
      timing.stopMs = Date.now() - t1
      timing.totalMs = Date.now() - t0
      console.log(`TIMING ${topology.name} ${JSON.stringify(timing)}`)
    })
    registerContracts({ test, describe, afterEach }, topology, () => deployment)
  })
}
