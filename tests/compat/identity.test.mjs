// Identity headers (Atek-Auth-User / Atek-Auth-Service, reference §3.6) and service bearer
// tokens (ATEK_HOST_BEARER_TOKEN), for services owned by system and for a user's service.
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'

import {
  startHost, fixtureUrl, makeEchoPackage, install, getService, servicesClient, procEnv,
  testWithHost, removeTempDirs, waitForService
} from './lib/host.mjs'
import { createUser, randomPassword, typedUsers, whoami } from './lib/users.mjs'

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

// Reference §3.6, first row: a service owned by a user calls with its own token; the callee
// sees the owning user's key and the calling service's key. Reference §4 and README "Accounts":
// such a token has its owner's rights (admin only if the owner is an admin, as the owner's role
// is now), so a plain user's service manages only its owner's services.
describe('identity of a user-owned service', () => {
  let h
  const test2 = testWithHost(() => h)
  const people = {} // name -> User
  let caller // ServiceInfo of alice-caller (auth-app-1, owned by alice)
  let callee // ServiceInfo of callee (auth-app-2, owned by system)
  let bobApp // ServiceInfo of bob-app (owned by bob)
  let ownHeaders // what the callee must see from alice-caller

  /** Has alice-caller call `method` of `apiId` with its own token; {result} or {error}. */
  const viaCaller = (apiId, method, params = []) =>
    h.client('test-a.example/api').callApi(apiId, method, params)
  const refused = { error: { code: -32003, message: 'Not authorized', data: null } }

  before(async () => {
    h = await startHost()
    // root: an admin besides system, so that alice can be made admin and plain again (the
    // last admin cannot be demoted).
    for (const [name, role] of [['root', 'admin'], ['alice', ''], ['bob', '']]) {
      people[name] = await createUser(h, { username: name, password: randomPassword(), role })
    }
    // Installed for alice, as `atek install --user alice` does.
    caller = await install(h, { id: 'alice-caller', sourceUrl: fixtureUrl('auth-app-1'), user: 'alice' })
    assert.equal(caller.status, 'active', JSON.stringify(caller))
    callee = await install(h, { id: 'callee', sourceUrl: fixtureUrl('auth-app-2') })
    assert.equal(callee.status, 'active', JSON.stringify(callee))
    const echo = await install(h, { id: 'echo', sourceUrl: makeEchoPackage() })
    assert.equal(echo.status, 'active', JSON.stringify(echo))
    bobApp = await install(h, { id: 'bob-app', sourceUrl: fixtureUrl('sub-echo'), user: 'bob' })
    assert.equal(bobApp.status, 'active', JSON.stringify(bobApp))
    ownHeaders = { user: people.alice.key, service: caller.key, forged: false }
  }, { timeout: 120000 })

  after(async () => {
    await h?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test2('the service is owned by alice and its token speaks for her', async () => {
    assert.equal(caller.settings.owningUserKey, people.alice.key)
    const token = procEnv((await getService(h, 'alice-caller')).pid).ATEK_HOST_BEARER_TOKEN
    assert.deepEqual(await whoami(h, { bearer: token }), { isActive: true, username: 'alice' })
  })

  test2('service to service through the gateway: Atek-Auth-User = owner, Atek-Auth-Service = the caller', async () => {
    // The call into alice-caller is made with the system token; the call it makes goes out
    // with its own ATEK_HOST_BEARER_TOKEN (node-rpc's default auth).
    assert.deepEqual(await h.client('test-a.example/api').callB(), ownHeaders)
    assert.deepEqual(await h.client('test-a.example/api').callBDefaultEndpoint(), ownHeaders)
    assert.deepEqual(await viaCaller('test.example/echo', 'headers'), { result: ownHeaders })
  })

  test2('identity headers forged with the user-owned service\'s token are replaced', async () => {
    const token = procEnv((await getService(h, 'alice-caller')).pid).ATEK_HOST_BEARER_TOKEN
    const forged = {
      authorization: 'Bearer ' + token,
      'Atek-Auth-User': 'system',
      'atek-auth-service': callee.key,
      'ATEK_AUTH_USER': people.root.key,
      'x-forged-who': 'root'
    }
    const e = await h.rawCall('test.example/echo', { jsonrpc: '2.0', id: 5, method: 'headers', params: [] }, forged)
    assert.deepEqual(e.json, { jsonrpc: '2.0', id: 5, result: ownHeaders }, e.text)
    const b = await h.rawCall('test-b.example/api', { jsonrpc: '2.0', id: 6, method: 'getAuthHeaders', params: [] }, forged)
    assert.deepEqual(b.json, { jsonrpc: '2.0', id: 6, result: ownHeaders }, b.text)
  })

  test2('a plain user\'s service is not admin: admin-only calls and other users\' services are refused', async () => {
    const bobBefore = await getService(h, 'bob-app')
    assert.deepEqual(await viaCaller('atek.cloud/inspect-api', 'isReady'), refused)
    assert.deepEqual(await viaCaller('atek.cloud/inspect-api', 'getConfig'), refused)
    assert.deepEqual(await viaCaller('atek.cloud/users-api', 'list'), refused)
    assert.deepEqual(await viaCaller('atek.cloud/users-api', 'get', [people.bob.key]), refused)
    for (const [method, params] of [
      ['get', ['bob-app']], ['stop', ['bob-app']], ['restart', ['bob-app']],
      ['configure', ['bob-app', { config: { HACKED: '1' } }]], ['uninstall', ['bob-app']],
      ['get', ['callee']], ['stop', ['callee']]
    ]) {
      assert.deepEqual(await viaCaller('atek.cloud/services-api', method, params), refused, `${method}(${params[0]})`)
    }
    // Installing is an admin's right (usersMayInstall is off).
    const install = await viaCaller('atek.cloud/services-api', 'install', [{ id: 'alice-more', sourceUrl: fixtureUrl('simple-app') }])
    assert.equal(install.error?.code, -32003, JSON.stringify(install))
    assert.match(install.error.message, /Only an admin may install/)
    // What it may do: its owner's own things.
    const list = await viaCaller('atek.cloud/services-api', 'list')
    assert.deepEqual(list.result?.services?.map((s) => s.settings.id), ['alice-caller'], JSON.stringify(list))
    const self = await viaCaller('atek.cloud/users-api', 'get', [people.alice.key])
    assert.equal(self.result?.username, 'alice', JSON.stringify(self))
    const bobAfter = await getService(h, 'bob-app')
    assert.equal(bobAfter.status, 'active')
    assert.equal(bobAfter.pid, bobBefore.pid, 'bob-app was restarted')
    assert.deepEqual(bobAfter.settings.config ?? {}, bobBefore.settings.config ?? {})
    assert.equal((await getService(h, 'callee')).status, 'active')
  })

  test2('the token\'s rights follow the owner\'s role as it is now', async () => {
    const users = typedUsers(h)
    await users.update(people.alice.key, { role: 'admin' })
    try {
      assert.deepEqual(await viaCaller('atek.cloud/inspect-api', 'isReady'), { result: true })
      const list = await viaCaller('atek.cloud/services-api', 'list')
      assert.deepEqual(list.result?.services?.map((s) => s.settings.id).sort(),
        ['alice-caller', 'bob-app', 'callee', 'echo'], JSON.stringify(list))
      // Admin or not, the identity is still alice's and the calling service's.
      assert.deepEqual(await h.client('test-a.example/api').callB(), ownHeaders)
    } finally {
      await users.update(people.alice.key, { role: '' })
    }
    assert.deepEqual(await viaCaller('atek.cloud/inspect-api', 'isReady'), refused)
    assert.deepEqual(await viaCaller('atek.cloud/services-api', 'get', ['bob-app']), refused)
  })
})
