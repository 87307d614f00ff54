// Host lifecycle: run.json, SIGTERM, SIGKILL, and a restart on the same config dir.
import { describe, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'

import {
  startHost, fixtureUrl, makeEchoPackage, install, getService, pidAlive, procEnv,
  testWithHost, removeTempDirs, waitFor, waitForService, servicesClient
} from './lib/host.mjs'

const hosts = []
const test = testWithHost(() => hosts)

async function hostWithServices (extraConfig = {}) {
  const host = await startHost({
    coreServices: [{ id: 'simple-core', sourceUrl: fixtureUrl('simple-app') }],
    config: extraConfig
  })
  hosts.push(host)
  const echo = await install(host, { id: 'echo', sourceUrl: makeEchoPackage() })
  assert.equal(echo.status, 'active', JSON.stringify(echo))
  const core = await getService(host, 'simple-core')
  assert.equal(core.status, 'active', JSON.stringify(core))
  return { host, pids: [echo.pid, core.pid] }
}

describe('host lifecycle', () => {
  after(async () => {
    // newest first: a restarted host shares its config dir with the one before it
    for (const h of [...hosts].reverse()) await h.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test('run.json names the host pid, the port and the URL', async () => {
    const host = await startHost()
    hosts.push(host)
    const run = JSON.parse(fs.readFileSync(path.join(host.dir, 'run.json'), 'utf8'))
    assert.equal(run.pid, host.pid)
    assert.ok(Number.isInteger(run.port) && run.port > 0)
    assert.equal(run.url, `http://127.0.0.1:${run.port}`)
    await host.stop()
  })

  test('SIGTERM: the host exits within stopTimeout + margin and its services are gone', async () => {
    const { host, pids } = await hostWithServices({ stopTimeout: '2s' })
    pids.forEach((pid) => assert.ok(pidAlive(pid), `service pid ${pid} should be running`))
    const res = await host.stop({ timeout: 2000 + 5000 })
    assert.equal(res.timedOut, false, `host did not exit within 7 s of SIGTERM (${JSON.stringify(res)})`)
    assert.ok(res.elapsed < 7000, `exit took ${res.elapsed} ms`)
    await waitFor(() => pids.every((pid) => !pidAlive(pid)),
      { timeout: 2000, message: `service pids ${pids.join(', ')} to be gone after the host exited` })
    assert.equal(res.code, 0, `exit status after SIGTERM: ${JSON.stringify(res)}`)
  })

  test('SIGKILL of the host: its service processes die too', async () => {
    const { host, pids } = await hostWithServices()
    pids.forEach((pid) => assert.ok(pidAlive(pid), `service pid ${pid} should be running`))
    const res = await host.stop({ signal: 'SIGKILL', timeout: 5000 })
    assert.equal(res.signal, 'SIGKILL')
    await waitFor(() => pids.every((pid) => !pidAlive(pid)), {
      timeout: 5000,
      message: `service pids ${pids.join(', ')} to die after the host was SIGKILLed (still alive: ${pids.filter(pidAlive).join(', ')})`
    })
  })

  test('restart on the same config dir: installed services come back with their keys', async () => {
    const { host, pids } = await hostWithServices({ stopTimeout: '2s' })
    const before = await getService(host, 'echo')
    const oldToken = procEnv(before.pid).ATEK_HOST_BEARER_TOKEN
    const res = await host.stop()
    assert.equal(res.timedOut, false)
    await waitFor(() => pids.every((pid) => !pidAlive(pid)), { timeout: 5000, message: 'old service pids gone' })

    const again = await startHost({ configDir: host.dir })
    hosts.push(again)
    const echo = await waitForService(again, 'echo', (i) => i.status === 'active', { timeout: 15000 })
    assert.equal(echo.key, before.key)
    assert.deepEqual(echo.settings, before.settings)
    assert.equal((await again.client('test.example/echo').env()).serviceKey, before.key)
    assert.equal(String((await again.client('test.example/echo').env()).hostPort), String(again.port))
    const core = await getService(again, 'simple-core')
    assert.equal(core.status, 'active')
    // service bearer tokens are regenerated at every host start: the old one is not valid any more
    const newToken = procEnv(echo.pid).ATEK_HOST_BEARER_TOKEN
    assert.ok(oldToken && newToken)
    assert.notEqual(newToken, oldToken)
    const r = await again.rawCall('test.example/echo', { jsonrpc: '2.0', id: 1, method: 'echo', params: [] },
      { authorization: 'Bearer ' + oldToken })
    assert.equal(r.status, 401, 'a service token from the previous host run must be refused')
    const { services } = await servicesClient(again).list()
    assert.deepEqual(services.map((s) => s.settings.id).sort(), ['echo', 'simple-core'])
  })
})
