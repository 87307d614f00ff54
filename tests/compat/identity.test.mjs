// Identity headers (Atek-Auth-User / Atek-Auth-Service, reference §3.6) and service bearer
// tokens (ATEK_HOST_BEARER_TOKEN).
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'

import {
  startHost, fixtureUrl, makeEchoPackage, install, getService, servicesClient, procEnv,
  testWithHost, removeTempDirs, waitForService
} from './lib/host.mjs'

let host
let appA // ServiceInfo of auth-a (installed with the system token)
let appB // ServiceInfo of auth-b (a core service)
const test = testWithHost(() => host)

describe('identity', () => {
  before(async () => {
    host = await startHost({
      coreServices: [{ id: 'auth-b', sourceUrl: fixtureUrl('auth-app-2') }]
    })
    appA = await install(host, { id: 'auth-a', sourceUrl: fixtureUrl('auth-app-1') })
    assert.equal(appA.status, 'active', `auth-a did not start: ${JSON.stringify(appA)}`)
    const echo = await install(host, { id: 'echo', sourceUrl: makeEchoPackage() })
    assert.equal(echo.status, 'active', `echo did not start: ${JSON.stringify(echo)}`)
    appB = await getService(host, 'auth-b')
  }, { timeout: 120000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test('ServiceInfo of a core service and of an installed one', async () => {
    assert.equal(appB.status, 'active')
    assert.equal(appB.core, true)
    assert.equal(appB.settings.owningUserKey, 'system')
    assert.equal(appA.core, false)
    assert.equal(appA.settings.owningUserKey, 'system')
    assert.ok(appA.key && appB.key && appA.key !== appB.key, `keys: ${appA.key} ${appB.key}`)
  })

  test('ATEK_ASSIGNED_SERVICE_KEY equals ServiceInfo.key', async () => {
    assert.equal(await host.client('test-a.example/api').getKey(), appA.key)
    assert.equal(await host.client('test-b.example/api').getKey(), appB.key)
  })

  test('system token: the service sees system/system', async () => {
    assert.deepEqual(await host.client('test-b.example/api').getAuthHeaders(),
      { user: 'system', service: 'system', forged: false })
    assert.deepEqual(await host.client('test.example/echo').headers(),
      { user: 'system', service: 'system', forged: false })
  })

  test('service to service through the gateway: system/<calling service key>', async () => {
    // auth-a calls auth-b with its own ATEK_HOST_BEARER_TOKEN (node-rpc default auth).
    assert.deepEqual(await host.client('test-a.example/api').callB(),
      { user: 'system', service: appA.key, forged: false })
  })

  test('an unmodified app using node-rpc defaults (localhost, ATEK_HOST_PORT) reaches the gateway', async () => {
    // node-rpc's default hostname is `localhost`; the host binds 127.0.0.1 in these tests.
    assert.deepEqual(await host.client('test-a.example/api').callBDefaultEndpoint(),
      { user: 'system', service: appA.key, forged: false })
  })

  test('service to a core service and to the echo service with the service\'s token', async () => {
    const viaA = await host.client('test-a.example/api').callApi('test.example/echo', 'headers', [])
    assert.deepEqual(viaA, { result: { user: 'system', service: appA.key, forged: false } })
  })

  test('a service token used directly (read from the process environment) identifies that service', async () => {
    const info = await getService(host, 'auth-a')
    assert.ok(info.pid, 'ServiceInfo.pid is needed for this test')
    const token = procEnv(info.pid).ATEK_HOST_BEARER_TOKEN
    assert.match(token ?? '', /^[0-9a-f]{64}$/, 'ATEK_HOST_BEARER_TOKEN must be 64 hex chars')
    assert.notEqual(token, host.token)
    const r = await host.rawCall('test-b.example/api',
      { jsonrpc: '2.0', id: 1, method: 'getAuthHeaders', params: [] },
      { authorization: 'Bearer ' + token })
    assert.equal(r.status, 200)
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 1, result: { user: 'system', service: appA.key, forged: false } })
  })

  test('every service gets its own bearer token', async () => {
    const a = await getService(host, 'auth-a')
    const b = await getService(host, 'auth-b')
    const ta = procEnv(a.pid).ATEK_HOST_BEARER_TOKEN
    const tb = procEnv(b.pid).ATEK_HOST_BEARER_TOKEN
    assert.ok(ta && tb)
    assert.notEqual(ta, tb)
  })

  test('caller-sent identity headers are replaced, other headers are not forwarded (system token)', async () => {
    const body = { jsonrpc: '2.0', id: 2, method: 'getAuthHeaders', params: [] }
    const r = await host.rawCall('test-b.example/api', body, {
      'Atek-Auth-User': 'mallory',
      'atek-auth-service': 'mallory-svc',
      'X-Forged-Foo': 'yes'
    })
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 2, result: { user: 'system', service: 'system', forged: false } })
    const e = await host.rawCall('test.example/echo', { jsonrpc: '2.0', id: 3, method: 'headers', params: [] }, {
      'ATEK-AUTH-USER': 'mallory',
      'Atek-Auth-Service': 'mallory-svc',
      'x-forged-bar': 'yes'
    })
    assert.deepEqual(e.json, { jsonrpc: '2.0', id: 3, result: { user: 'system', service: 'system', forged: false } })
  })

  test('caller-sent identity headers are replaced when a service token is used', async () => {
    const info = await getService(host, 'auth-a')
    const token = procEnv(info.pid).ATEK_HOST_BEARER_TOKEN
    const r = await host.rawCall('test.example/echo', { jsonrpc: '2.0', id: 4, method: 'headers', params: [] }, {
      authorization: 'Bearer ' + token,
      'atek-auth-user': 'mallory',
      'atek-auth-service': 'system',
      'x-forged-baz': '1'
    })
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 4, result: { user: 'system', service: appA.key, forged: false } })
  })

  test('a service owned by system is admin: it may call inspect-api and services-api', async () => {
    const a = host.client('test-a.example/api')
    assert.deepEqual(await a.callApi('atek.cloud/inspect-api', 'isReady', []), { result: true })
    const list = await a.callApi('atek.cloud/services-api', 'list', [])
    assert.ok(list.result, `services-api.list from a service failed: ${JSON.stringify(list)}`)
    const ids = list.result.services.map((s) => s.settings.id).sort()
    assert.deepEqual(ids, ['auth-a', 'auth-b', 'echo'])
  })

  test('a service gets an unknown-method/no-provider error through the gateway like any client', async () => {
    const a = host.client('test-a.example/api')
    assert.deepEqual(await a.callApi('nobody.example/api', 'x', []), {
      error: { code: -32601, message: 'No service available which matches {"transport":"rpc","api":"nobody.example/api"}', data: null }
    })
  })

  test('the service key is kept across a restart and calls from the restarted service carry it', async () => {
    const before = await getService(host, 'auth-a')
    await servicesClient(host).restart('auth-a')
    const after = await waitForService(host, 'auth-a', (i) => i.status === 'active' && i.pid && i.pid !== before.pid)
    assert.equal(after.key, before.key)
    assert.equal(await host.client('test-a.example/api').getKey(), before.key)
    assert.deepEqual(await host.client('test-a.example/api').callB(),
      { user: 'system', service: before.key, forged: false })
  })
})
