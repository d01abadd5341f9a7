// Parent-side handle on an Express app child (bench/lib/http-server.mjs, or another `script` of
// the same protocol: bench/lib/idem-server.mjs).

import { fork } from 'node:child_process'
import path from 'node:path'
import { BENCH_DIR } from './common.mjs'

const SERVER = path.join(BENCH_DIR, 'lib', 'http-server.mjs')

/**
 * Start the app in a child process. Resolves { port, url, stats(), close(), child }.
 * close() asks it to close its server and clients and waits (≤ 10 s) for it to exit by itself;
 * resolves whether it did (else it is SIGKILLed).
 */
export function startApp(params, { readyTimeoutMs = 15_000, script = SERVER } = {}) {
  return new Promise((resolve, reject) => {
    const child = fork(script, [JSON.stringify(params)], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, REDIS_URL: '' },
    })
    child.stdout.pipe(process.stderr) // stdout is the report's
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr = (stderr + d).slice(-10_000)
    })
    let exited = false
    const exit = new Promise((r) =>
      child.once('exit', (code, signal) => {
        exited = true
        r({ code, signal })
      }),
    )
    const t = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`app (${params.store ?? params.contender}) not ready after ${readyTimeoutMs} ms: ${stderr}`))
    }, readyTimeoutMs)
    exit.then(({ code, signal }) => {
      clearTimeout(t)
      reject(new Error(`app (${params.store ?? params.contender}) exited early (${code ?? signal}): ${stderr}`))
    })
    const waiters = []
    child.on('message', (m) => {
      if (m.type === 'ready') {
        clearTimeout(t)
        resolve(handle(m.port))
      } else {
        const w = waiters.findIndex((x) => x.type === m.type)
        if (w >= 0) waiters.splice(w, 1)[0].resolve(m)
      }
    })
    const ask = (msg, type, timeoutMs = 5000) =>
      new Promise((res, rej) => {
        if (exited) return rej(new Error('app exited'))
        const timer = setTimeout(() => rej(new Error(`app did not answer ${msg}`)), timeoutMs)
        waiters.push({
          type,
          resolve: (m) => {
            clearTimeout(timer)
            res(m)
          },
        })
        child.send(msg)
      })
    const handle = (port) => ({
      port,
      url: `http://127.0.0.1:${port}/`,
      child,
      stderr: () => stderr,
      stats: () => ask('stats', 'stats'),
      async close() {
        if (exited) return false
        await ask('close', 'closed', 10_000).catch(() => {})
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        const { code, signal } = await exit
        clearTimeout(timer)
        if (code !== 0 || signal)
          process.stderr.write(
            `[bench] warning: app (${params.store ?? params.contender}) did not exit by itself (${code ?? signal})\n`,
          )
        return code === 0 && !signal
      },
    })
  })
}
