// The child side of bench/lib/app.mjs's protocol, shared by the app servers (http-server.mjs,
// fastify-server.mjs, nest-server.mjs, idem-server.mjs): their params, a count of this
// process's unhandled rejections, and the IPC — { type: 'ready', port } once listening,
// 'stats' answered with this process's CPU (and each thread kind's), the app's own counters
// and the unhandled count, 'close' closing the app and its clients, then { type: 'closed' }
// and the process exits by itself.

import { threadCpuMicros } from './common.mjs'

/** The app's params: JSON in argv[2]. */
export const params = JSON.parse(process.argv[2])

let unhandled = 0
process.on('unhandledRejection', () => {
  unhandled++
})

/**
 * Tell the parent the app listens on `port`, then answer its messages: 'stats' with
 * `{ type: 'stats', cpu, threads, ...stats(), unhandled }`, 'close' with `close()` then 'closed'.
 * @param {number} port
 * @param {{ stats: () => object, close: () => Promise<unknown> }} app
 */
export function serveParent(port, { stats, close }) {
  process.send({ type: 'ready', port })
  process.on('message', async (m) => {
    if (m === 'stats') {
      process.send({
        type: 'stats',
        cpu: process.cpuUsage(),
        threads: threadCpuMicros(process.pid),
        ...stats(),
        unhandled,
      })
    } else if (m === 'close') {
      await close()
      process.send({ type: 'closed' }, () => process.disconnect())
    }
  })
}
