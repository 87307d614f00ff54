// Isolation between two users (reference §4.2 "non-admins see only their own services", §4.3,
// §8.1 bind-session permission, §8.2 main service): alice and bob each own a service; each
// sees and manages only their own, through the original services-api client with their
// service's bearer token and through the gateway with their session cookie; an admin sees all.
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { createClient as createServicesClient } from '@atek-cloud/services-api'

import {
  startHost, fixtureUrl, install, getService, procEnv, rpcError, testWithHost, removeTempDirs,
  boundedProxy, waitForService
} from './lib/host.mjs'
import {
  SERVICES_API, USERS_API, createUser, gateway, call, loginOk, req, bindApp, typedUsers,
  mainHost, appHost, randomPassword, whoami
} from './lib/users.mjs'

let host
const test = testWithHost(() => host)

const users = {} // name -> {user, password, cookie, token (of the service they own)}
const apps = {} // id -> ServiceInfo

function typedServices (token) {
  const c = createServicesClient()
  c.$setEndpoint({ proto: 'http', hostname: '127.0.0.1', port: host.port })
  c.$setAuthHeader('Bearer ' + token)
  return boundedProxy(c, 60000, SERVICES_API)
}

const ids = (list) => list.services.map((s) => s.settings.id).sort()

/** The JSON the host put in its welcome page (`<script id="atek-data">`). */
function welcomeData (html) {
  const m = /<script id="atek-data" type="application\/json">(.*?)<\/script>/s.exec(html)
  assert.ok(m, `no welcome data in: ${html.slice(0, 200)}`)
  return JSON.parse(m[1])
}

describe('isolation between users', () => {
  before(async () => {
    host = await startHost()
    for (const [name, role] of [['root', 'admin'], ['alice', ''], ['bob', '']]) {
      const password = randomPassword()
      users[name] = { password, user: await createUser(host, { username: name, password, role }) }
    }
    // services installed with the system token on behalf of a user (InstallOpts.user = username)
    for (const [id, user] of [['alice-app', 'alice'], ['bob-app', 'bob'], ['root-app', 'root'], ['sys-app', undefined]]) {
      const opts = { id, sourceUrl: fixtureUrl('sub-echo') }
      if (user) opts.user = user
      apps[id] = await install(host, opts)
      assert.equal(apps[id].status, 'active', JSON.stringify(apps[id]))
    }
    for (const name of ['root', 'alice', 'bob']) {
      const info = await getService(host, `${name}-app`)
      users[name].token = procEnv(info.pid).ATEK_HOST_BEARER_TOKEN
      users[name].cookie = await loginOk(host, name, users[name].password)
    }
  }, { timeout: 120000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test('install(user) makes the named user the owner', async () => {
    assert.equal(apps['alice-app'].settings.owningUserKey, users.alice.user.key)
    assert.equal(apps['bob-app'].settings.owningUserKey, users.bob.user.key)
    assert.equal(apps['root-app'].settings.owningUserKey, users.root.user.key)
    assert.equal(apps['sys-app'].settings.owningUserKey, 'system')
  })

  test('list(): each user sees only their own services (service token, original client)', async () => {
    assert.deepEqual(ids(await typedServices(users.alice.token).list()), ['alice-app'])
    assert.deepEqual(ids(await typedServices(users.bob.token).list()), ['bob-app'])
  })

  test('list(): each user sees only their own services (session cookie)', async () => {
    assert.deepEqual(ids(await call(host, SERVICES_API, 'list', [], { cookie: users.alice.cookie })), ['alice-app'])
    assert.deepEqual(ids(await call(host, SERVICES_API, 'list', [], { cookie: users.bob.cookie })), ['bob-app'])
  })

  test('an admin sees every service (admin user\'s cookie, admin user\'s service, system token)', async () => {
    const all = ['alice-app', 'bob-app', 'root-app', 'sys-app']
    assert.deepEqual(ids(await call(host, SERVICES_API, 'list', [], { cookie: users.root.cookie })), all)
    assert.deepEqual(ids(await typedServices(users.root.token).list()), all)
    assert.deepEqual(ids(await typedServices(host.token).list()), all)
  })

  for (const via of ['service token', 'session cookie']) {
    test(`a user cannot get, stop, restart, configure or uninstall another user's service (${via})`, async () => {
      const before = await getService(host, 'bob-app')
      const attempts = [
        ['get', ['bob-app']],
        ['stop', ['bob-app']],
        ['restart', ['bob-app']],
        ['configure', ['bob-app', { config: { HACKED: '1' } }]],
        ['uninstall', ['bob-app']],
        ['get', ['sys-app']],
        ['stop', ['sys-app']]
      ]
      for (const [method, params] of attempts) {
        if (via === 'service token') {
          const e = await rpcError(typedServices(users.alice.token)[method](...params))
          assert.equal(e.code, -32003, `${method}(${params[0]}): ${e.message}`)
        } else {
          const r = await gateway(host, SERVICES_API, method, params, { cookie: users.alice.cookie })
          assert.equal(r.status, 200, r.text)
          assert.equal(r.json?.error?.code, -32003, `${method}(${params[0]}): ${r.text}`)
        }
      }
      const after = await getService(host, 'bob-app')
      assert.equal(after.status, 'active')
      assert.equal(after.pid, before.pid, 'bob-app was restarted')
      assert.deepEqual(after.settings.config ?? {}, before.settings.config ?? {})
      assert.equal((await getService(host, 'sys-app')).status, 'active')
    })
  }

  test('a user manages their own service; bob\'s is untouched', async () => {
    const alice = typedServices(users.alice.token)
    const info = await alice.get('alice-app')
    assert.equal(info.settings.id, 'alice-app')
    await call(host, SERVICES_API, 'configure', ['alice-app', { config: { COLOR: 'blue' } }], { cookie: users.alice.cookie })
    assert.equal((await getService(host, 'alice-app')).settings.config?.COLOR, 'blue')
  })

  test('installing is an admin\'s right by default (usersMayInstall false): a non-admin is refused', async () => {
    // A deliberate change from the original (where any user could install): a service runs
    // unsandboxed as the host's Unix user, so installing one is as good as being an admin.
    for (const [label, attempt] of [
      ['cookie', () => gateway(host, SERVICES_API, 'install', [{ id: 'alice-two', sourceUrl: fixtureUrl('simple-app') }], { cookie: users.alice.cookie })],
      ['cookie, for bob', () => gateway(host, SERVICES_API, 'install', [{ id: 'for-bob', sourceUrl: fixtureUrl('simple-app'), user: 'bob' }], { cookie: users.alice.cookie })],
      ['re-pointing the source', () => gateway(host, SERVICES_API, 'configure', ['alice-app', { sourceUrl: fixtureUrl('simple-app') }], { cookie: users.alice.cookie })]
    ]) {
      const r = await attempt()
      assert.equal(r.json?.error?.code, -32003, `${label}: ${r.text}`)
    }
    const e = await rpcError(typedServices(users.alice.token).install({ id: 'alice-three', sourceUrl: fixtureUrl('simple-app') }))
    assert.equal(e.code, -32003)
    assert.deepEqual(ids(await typedServices(host.token).list()), ['alice-app', 'bob-app', 'root-app', 'sys-app'])
    assert.equal((await getService(host, 'alice-app')).settings.sourceUrl, fixtureUrl('sub-echo'))
  })

  test('an admin user may stop and start another user\'s service', async () => {
    await call(host, SERVICES_API, 'stop', ['bob-app'], { cookie: users.root.cookie })
    await waitForService(host, 'bob-app', (i) => i.status === 'stopped')
    await call(host, SERVICES_API, 'start', ['bob-app'], { cookie: users.root.cookie })
    const info = await waitForService(host, 'bob-app', (i) => i.status === 'active' && i.pid)
    users.bob.token = procEnv(info.pid).ATEK_HOST_BEARER_TOKEN // a restarted service gets a new token
  })

  test('whoami with a service bearer token names the service\'s owner', async () => {
    assert.deepEqual(await whoami(host, { bearer: users.alice.token }), { isActive: true, username: 'alice' })
    assert.deepEqual(await whoami(host, { bearer: users.bob.token }), { isActive: true, username: 'bob' })
  })

  test('subdomain with a service bearer token: own app with the caller\'s identity, another user\'s app refused', async () => {
    const own = await req(host, { hostHeader: appHost(host, 'alice-app'), path: '/b', bearer: users.alice.token })
    assert.equal(own.status, 200, own.text.slice(0, 200))
    assert.equal(own.json.headers['atek-auth-user'], users.alice.user.key)
    assert.equal(own.json.headers['atek-auth-service'], apps['alice-app'].key, 'bearer: the calling service\'s key')
    const foreign = await req(host, { hostHeader: appHost(host, 'bob-app'), path: '/b', bearer: users.alice.token })
    assert.equal(foreign.status, 403, `alice's token on bob-app: ${foreign.status} ${foreign.text.slice(0, 200)}`)
    assert.equal(foreign.json?.serviceKey, undefined, 'the request reached bob\'s app')
  })

  test('users-api: alice cannot read bob\'s user record or settings', async () => {
    for (const method of ['get', 'getSettings']) {
      const r = await gateway(host, USERS_API, method, [users.bob.user.key], { cookie: users.alice.cookie })
      assert.deepEqual(r.json?.error, { code: -32003, message: 'Not authorized' }, r.text)
    }
  })

  test('bind-session: a user may not open another user\'s app (403), may open their own and system-owned ones', async () => {
    const bind = (cookie, service) => req(host, {
      path: '/_atek/bind-session?' + new URLSearchParams({ service, path: '/', nonce: 'n'.repeat(43) }),
      cookie
    })
    const denied = await bind(users.alice.cookie, 'bob-app')
    assert.equal(denied.status, 403, `alice -> bob-app: ${denied.status} ${denied.headers.location ?? ''}`)
    assert.ok(!denied.headers.location)
    for (const service of ['alice-app', 'sys-app']) {
      const ok = await bind(users.alice.cookie, service)
      assert.equal(ok.status, 302, `alice -> ${service}: ${ok.status}`)
      assert.ok(new URL(ok.headers.location).host === appHost(host, service))
    }
    const admin = await bind(users.root.cookie, 'bob-app')
    assert.equal(admin.status, 302, 'an admin may open any app')
  })

  test('each user reaches their own app through its subdomain with their own identity', async () => {
    for (const name of ['alice', 'bob']) {
      const { cookie } = await bindApp(host, users[name].cookie, `${name}-app`)
      const r = await req(host, { hostHeader: appHost(host, `${name}-app`), path: '/who', cookie })
      assert.equal(r.status, 200, r.text)
      assert.equal(r.json.headers['atek-auth-user'], users[name].user.key)
      assert.equal(r.json.headers['atek-auth-service'], apps[`${name}-app`].key)
    }
    // alice's app cookie says nothing on bob's subdomain
    const { cookie } = await bindApp(host, users.alice.cookie, 'alice-app')
    const r = await req(host, { hostHeader: appHost(host, 'bob-app'), path: '/who', cookie })
    assert.equal(r.status, 302, `alice's app cookie on bob-app: ${r.status} ${r.text.slice(0, 200)}`)
  })

  test('main domain: a user\'s main service is proxied only when they own it', async () => {
    // alice's main service is her own app: GET / on the main domain is proxied to it
    await typedUsers(host).updateSettings(users.alice.user.key, { mainServiceId: 'alice-app' })
    const own = await req(host, { hostHeader: mainHost(host), path: '/home?x=1', cookie: users.alice.cookie })
    assert.equal(own.status, 200, own.text.slice(0, 300))
    assert.equal(own.json?.serviceKey, apps['alice-app'].key, own.text.slice(0, 300))
    assert.equal(own.json.url, '/home?x=1')
    assert.equal(own.json.headers['atek-auth-user'], users.alice.user.key)
    assert.equal(own.json.headers['atek-auth-service'], apps['alice-app'].key)
    assert.ok(!/(^|;\s*)session=/.test(own.json.headers.cookie ?? ''), 'the session cookie reached the main service')
    // CSRF applies to the main service too
    const evil = await req(host, { method: 'POST', path: '/form', cookie: users.alice.cookie, body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://evil.example' } })
    assert.equal(evil.status, 403, `cross-site POST to the main service: ${evil.status}`)
    assert.equal(evil.json?.serviceKey, undefined, 'the cross-site POST reached the main service')
    const same = await req(host, { method: 'POST', path: '/form', cookie: users.alice.cookie, body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: `http://${mainHost(host)}` } })
    assert.equal(same.status, 200, same.text.slice(0, 200))
    assert.equal(same.json.body, 'a=1')
    // pointed at bob's app: not proxied (the welcome page instead)
    await typedUsers(host).updateSettings(users.alice.user.key, { mainServiceId: 'bob-app' })
    const foreign = await req(host, { hostHeader: mainHost(host), path: '/', cookie: users.alice.cookie })
    assert.equal(foreign.status, 200)
    assert.equal(foreign.json, undefined, `bob's app answered alice's main domain: ${foreign.text.slice(0, 300)}`)
    assert.match(foreign.headers['content-type'] ?? '', /text\/html/)
    // no main service: the welcome page
    await typedUsers(host).updateSettings(users.bob.user.key, {})
    const none = await req(host, { hostHeader: mainHost(host), path: '/', cookie: users.bob.cookie })
    assert.equal(none.status, 200)
    assert.match(none.headers['content-type'] ?? '', /text\/html/)
    // bob may not install (usersMayInstall is off): the page offers no install form
    assert.equal(welcomeData(none.text).mayInstall, false, 'a plain user is told installing is an admin\'s')
    assert.equal(welcomeData(none.text).userKey, users.bob.user.key)
    // an admin may
    await typedUsers(host).updateSettings(users.root.user.key, {})
    const admin = await req(host, { hostHeader: mainHost(host), path: '/', cookie: users.root.cookie })
    assert.equal(welcomeData(admin.text).mayInstall, true, 'an admin may install')
  })

  test('main domain: bearer -> {"message":"Atek online"}; anonymous GET -> login; anonymous POST -> 401', async () => {
    const bearer = await req(host, { path: '/', bearer: host.token })
    assert.equal(bearer.status, 200)
    assert.deepEqual(bearer.json, { message: 'Atek online' })
    const anon = await req(host, { path: '/some/page?q=1' })
    assert.equal(anon.status, 302)
    const loc = new URL(anon.headers.location, `http://${mainHost(host)}/`)
    assert.equal(loc.host, mainHost(host))
    assert.equal(loc.pathname, '/_atek/login')
    assert.equal(loc.searchParams.get('redirect'), '/some/page?q=1')
    const post = await req(host, { method: 'POST', path: '/', body: '{}', headers: { 'content-type': 'application/json' } })
    assert.equal(post.status, 401)
    assert.ok(post.json, `401 should be JSON: ${post.text.slice(0, 200)}`)
  })
})

describe('isolation with usersMayInstall', () => {
  let h
  const test2 = testWithHost(() => h)
  before(async () => {
    h = await startHost({ config: { usersMayInstall: true } })
  }, { timeout: 60000 })
  after(async () => { await h?.cleanup() }, { timeout: 60000 })

  test2('a non-admin install is owned by the caller and invisible to other users; installing for another user is refused', async () => {
    const pa = randomPassword()
    const pb = randomPassword()
    const carl = await createUser(h, { username: 'carl', password: pa })
    await createUser(h, { username: 'dina', password: pb })
    const carlCookie = await loginOk(h, 'carl', pa)
    const dinaCookie = await loginOk(h, 'dina', pb)
    const mine = await call(h, SERVICES_API, 'install', [{ id: 'carl-app', sourceUrl: fixtureUrl('simple-app') }], { cookie: carlCookie })
    h.trackPid(mine.pid)
    assert.equal(mine.settings.owningUserKey, carl.key)
    assert.deepEqual(ids(await call(h, SERVICES_API, 'list', [], { cookie: carlCookie })), ['carl-app'])
    assert.deepEqual(ids(await call(h, SERVICES_API, 'list', [], { cookie: dinaCookie })), [])
    const get = await gateway(h, SERVICES_API, 'get', ['carl-app'], { cookie: dinaCookie })
    assert.equal(get.json?.error?.code, -32003, get.text)
    const forDina = await gateway(h, SERVICES_API, 'install', [{ id: 'for-dina', sourceUrl: fixtureUrl('simple-app'), user: 'dina' }], { cookie: carlCookie })
    assert.equal(forDina.json?.error?.code, -32003, forDina.text)
    // the welcome page offers dina an install form, as the host lets users install
    const welcome = await req(h, { hostHeader: mainHost(h), path: '/', cookie: dinaCookie })
    assert.equal(welcomeData(welcome.text).mayInstall, true)
    assert.equal(await call(h, SERVICES_API, 'uninstall', ['carl-app'], { cookie: carlCookie }), null)
  })
})
