// The child side of `forkChild` (lib.mjs): counts unhandled rejections (the parent asserts
// there are none) and answers the parent's IPC commands { id, cmd, args } with
// { id, result } | { id, error }; after `close` it disconnects.

/** Unhandled rejections of this process: how many, and the first five reasons. */
export const unhandled = { count: 0, reasons: [] }
process.on('unhandledRejection', (reason) => {
  unhandled.count++
  if (unhandled.reasons.length < 5) unhandled.reasons.push(String(reason && reason.stack ? reason.stack : reason))
})

/** Answer IPC commands with `handlers[cmd](args)`; with `ready`, tell the parent we are up. */
export function serve(handlers, { ready = true } = {}) {
  process.on('message', async (m) => {
    if (!m || typeof m !== 'object' || !m.cmd) return
    try {
      const result = await handlers[m.cmd](m.args || {})
      process.send({ id: m.id, result }, () => {
        if (m.cmd === 'close') process.disconnect()
      })
    } catch (e) {
      process.send({ id: m.id, error: String(e && e.stack ? e.stack : e) })
    }
  })
  if (ready) process.send({ type: 'ready' })
}
