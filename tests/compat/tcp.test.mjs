// A service reached over TCP only (`ATEK_ASSIGNED_PORT`, README "Environment": listen on the
// socket or on the port). The echo service with `ECHO_LISTEN=port` never makes its socket, so
// the host has to find it ready by `HEAD /` on the port, route gateway calls to that port with
// the identity headers, and give the same port back when it restarts the service after a
// crash (ARCHITECTURE.md, flow 5: "respawn with the same key and port").
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'

import {
  startHost, makeEchoPackage, makeTempDir, install, getService, pidAlive, procEnv,
  testWithHost, removeTempDirs, waitFor, waitForService
} from './lib/host.mjs'

const api = 'test.example/echo-tcp'
let host
let info
let portFile
const test = testWithHost(() => host)

/** The port the echo service bound, as it wrote it to ECHO_PORT_FILE (written atomically). */
function boundPort () {
  try { return Number(fs.readFileSync(portFile, 'utf8').trim()) || null } catch { return null }
}

describe('a service on its TCP port only', () => {
  before(async () => {
    host = await startHost({ config: { restartDelay: '100ms' } })
    portFile = path.join(makeTempDir('atek-compat-port-'), 'port')
    info = await install(host, {
      id: 'echo-tcp',
      sourceUrl: makeEchoPackage({ api }),
      config: { ECHO_LISTEN: 'port', ECHO_PORT_FILE: portFile }
    })
  }, { timeout: 60000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test('it becomes active by HEAD / on its port, which services-api get shows', async () => {
    assert.equal(info.status, 'active', JSON.stringify(info))
    assert.ok(Number.isInteger(info.port) && info.port > 0, `port: ${info.port}`)
    assert.equal(boundPort(), info.port, 'the service listens on the port ServiceInfo names')
    assert.equal(procEnv(info.pid).ATEK_ASSIGNED_PORT, String(info.port))
    assert.equal(fs.existsSync(path.join(host.dir, 'sockets', 'echo-tcp.sock')), false,
      'the service made no socket, so readiness can only have come from the port')
    assert.match(host.serviceLog('echo-tcp'), new RegExp(`ready on tcp:127\\.0\\.0\\.1:${info.port}\\b`))
    const got = await getService(host, 'echo-tcp')
    assert.equal(got.port, info.port)
  })

  test('gateway calls reach it over TCP with the identity headers', async () => {
    assert.deepEqual(await host.client(api).headers(), { user: 'system', service: 'system', forged: false })
    // With the service's own token, the call carries its own key; forged headers are dropped.
    const token = procEnv(info.pid).ATEK_HOST_BEARER_TOKEN
    const r = await host.rawCall(api, { jsonrpc: '2.0', id: 7, method: 'headers', params: [] }, {
      authorization: 'Bearer ' + token,
      'atek-auth-user': 'mallory',
      'atek-auth-service': 'mallory',
      'x-forged-tcp': 'yes'
    })
    assert.equal(r.status, 200, r.text)
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 7, result: { user: 'system', service: info.key, forged: false } })
  })

  test('kill -9: restarted on the same port with the same key, and reachable again', async () => {
    const before = await getService(host, 'echo-tcp')
    assert.ok(before.pid && pidAlive(before.pid), `pid ${before.pid}`)
    fs.rmSync(portFile)
    process.kill(before.pid, 'SIGKILL')
    const after = await waitForService(host, 'echo-tcp',
      (i) => i.status === 'active' && i.pid && i.pid !== before.pid && i.restarts >= before.restarts + 1,
      { timeout: 15000, message: 'echo-tcp to be restarted after SIGKILL' })
    assert.match(after.lastExit ?? '', /SIGKILL/, `lastExit: ${after.lastExit}`)
    assert.equal(after.key, before.key)
    assert.equal(after.port, before.port, 'a restart after a crash keeps the port')
    assert.equal(procEnv(after.pid).ATEK_ASSIGNED_PORT, String(before.port))
    await waitFor(() => boundPort(), { timeout: 5000, message: 'the restarted service to write its port' })
    assert.equal(boundPort(), before.port)
    assert.deepEqual(await host.client(api).headers(), { user: 'system', service: 'system', forged: false })
    const env = await host.client(api).env()
    assert.equal(env.serviceKey, before.key)
    assert.equal(env.hasPort, true)
  })
})
