// The supervisor: readiness, crash restarts, the environment a service gets (reference §1.5,
// with our changes: a service that never gets ready fails, crashed services are restarted).
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'

import {
  startHost, makeEchoPackage, install, getService, servicesClient, rpcError, pidAlive,
  testWithHost, removeTempDirs, waitFor, waitForService
} from './lib/host.mjs'

let host
const test = testWithHost(() => host)

describe('supervisor', () => {
  before(async () => {
    host = await startHost({ config: { readyTimeout: '1s' } })
  }, { timeout: 60000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test('a service that never gets ready: failed, readiness in statusReason, API not registered', async () => {
    const api = 'test.example/never-ready'
    const t0 = Date.now()
    const info = await install(host, {
      id: 'never-ready',
      sourceUrl: makeEchoPackage({ api }),
      config: { ECHO_FAIL_READY: '1' }
    })
    const elapsed = Date.now() - t0
    try {
      assert.equal(info.status, 'failed', JSON.stringify(info))
      assert.match(info.statusReason ?? '', /read/i, `statusReason: ${info.statusReason}`)
      assert.ok(elapsed < 8000, `install took ${elapsed} ms with readyTimeout 1s`)
      const err = await rpcError(host.client(api).echo(1))
      assert.equal(err.code, -32601)
      assert.equal(err.message, `No service available which matches {"transport":"rpc","api":"${api}"}`)
      const again = await getService(host, 'never-ready')
      assert.notEqual(again.status, 'active')
    } finally {
      await servicesClient(host).uninstall('never-ready').catch(() => {})
    }
  })

  describe('a running exec service', () => {
    let info

    before(async () => {
      info = await install(host, {
        id: 'echo',
        sourceUrl: makeEchoPackage(),
        config: { ECHO_CFG_X: '1', echo_cfg_lower: 'two' }
      })
      assert.equal(info.status, 'active', JSON.stringify(info))
    })

    test('environment: service key, host port, socket, token, config (keys upper-cased)', async () => {
      const env = await host.client('test.example/echo').env()
      assert.equal(env.serviceKey, info.key)
      assert.equal(String(env.hostPort), String(host.port))
      assert.equal(env.hasSocket, true)
      assert.equal(env.hasPort, true)
      assert.equal(env.hasToken, true)
      assert.equal(env.config?.ECHO_CFG_X, '1')
      assert.equal(env.config?.ECHO_CFG_LOWER, 'two')
    })

    test('kill -9: restarted with a new pid, restarts >= 1, same key', async () => {
      const before = await getService(host, 'echo')
      assert.ok(before.pid && pidAlive(before.pid), `pid ${before.pid}`)
      process.kill(before.pid, 'SIGKILL')
      const after = await waitForService(host, 'echo',
        (i) => i.status === 'active' && i.pid && i.pid !== before.pid && i.restarts >= 1,
        { timeout: 10000, message: 'echo to be restarted after SIGKILL' })
      assert.ok(after.restarts >= before.restarts + 1, `restarts ${before.restarts} -> ${after.restarts}`)
      assert.equal(after.key, before.key)
      assert.equal(typeof after.lastExit, 'string', `lastExit: ${after.lastExit}`)
      assert.match(after.lastExit, /SIGKILL|signal 9|\b9\b/, `lastExit: ${after.lastExit}`)
      const env = await host.client('test.example/echo').env()
      assert.equal(env.serviceKey, before.key, 'ATEK_ASSIGNED_SERVICE_KEY must survive a restart')
      assert.equal(env.config?.ECHO_CFG_X, '1')
    })

    test('stop() then start() resets to a fresh run', async () => {
      const svc = servicesClient(host)
      const before = await getService(host, 'echo')
      await svc.stop('echo')
      const stopped = await getService(host, 'echo')
      assert.equal(stopped.status, 'stopped')
      await waitFor(() => !pidAlive(before.pid), { timeout: 5000, message: 'echo process to exit after stop' })
      // a stopped service is not restarted by the supervisor
      const still = await getService(host, 'echo')
      assert.equal(still.status, 'stopped')
      await svc.start('echo')
      const started = await waitForService(host, 'echo', (i) => i.status === 'active')
      assert.equal(started.restarts, 0, 'restarts counts crashes since the last start by request')
      assert.equal((await host.client('test.example/echo').env()).serviceKey, before.key)
    })
  })

  test('a crash-looping service keeps being restarted, and calls to it never hang', async () => {
    const api = 'test.example/crashy'
    const info = await install(host, {
      id: 'crashy',
      sourceUrl: makeEchoPackage({ api }),
      config: { ECHO_CRASH_AFTER_MS: '300' }
    })
    try {
      const looped = await waitForService(host, 'crashy', (i) => i.restarts >= 2 || i.status === 'failed',
        { timeout: 15000, message: 'crashy to be restarted twice' })
      assert.ok(looped.restarts >= 2 || looped.status === 'failed', JSON.stringify(looped))
      const r = await host.rawCall(api, { jsonrpc: '2.0', id: 1, method: 'sleep', params: [5000] }, {}, { timeout: 15000 })
      assert.equal(r.status, 200)
      assert.ok(r.json?.error, `expected an error, got ${r.text}`)
      assert.ok([-32000, -32601].includes(r.json.error.code), r.text)
      assert.equal(info.settings.id, 'crashy')
    } finally {
      await servicesClient(host).uninstall('crashy').catch(() => {})
    }
  })
})
