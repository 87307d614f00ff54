// atek.cloud/user-sessions-api and the session cookie (reference §4.4, §7.2; spec: first run,
// cookie attributes, revocation, stale cookies, login page), with the original typed client
// `@atek-cloud/user-sessions-api` 1.0.0, `@atek-cloud/node-fetch-cookies` 2.0.4 for the
// browser-like flows, and plain http where exact headers matter.
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

import { UserSession as UserSessionClass } from '@atek-cloud/user-sessions-api'
import { fetch as cookieFetch, Cookie } from '@atek-cloud/node-fetch-cookies'
import { ajv } from '@atek-cloud/node-rpc'

import { startHost, testWithHost, removeTempDirs, waitFor, sleep, install, fixtureUrl, storedBytes, serverRows } from './lib/host.mjs'
import {
  SESSIONS_API, USERS_API, typedUsers, typedSessions, createUser, gateway, call, login, loginOk,
  whoami, whoamiRaw, req, setCookies, sessionSetCookie, mainHost, mainOrigin, loopbackAgent,
  BrowserJar, browserFetch, paceLogin, randomPassword, bindApp
} from './lib/users.mjs'

let host
let extraHosts = []
const test = testWithHost(() => [host, ...extraHosts])
const validateSession = ajv.compile(UserSessionClass.schema)

const TTL_30_DAYS = 30 * 24 * 3600
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/

let root, rootPw
let alice, alicePw

function assertSessionCookie (sc, label, { secure = true, sameSite = 'None', maxAge = TTL_30_DAYS } = {}) {
  assert.ok(sc, `${label}: no session Set-Cookie`)
  assert.match(sc.value, TOKEN_RE, `${label}: token must be 32 random bytes as base64url without padding`)
  assert.equal(sc.attrs.path, '/', `${label}: ${sc.raw}`)
  assert.equal(sc.attrs.httponly, true, `${label}: HttpOnly missing: ${sc.raw}`)
  assert.equal(String(sc.attrs.samesite).toLowerCase(), sameSite.toLowerCase(), `${label}: SameSite: ${sc.raw}`)
  assert.equal(sc.attrs.secure === true, secure, `${label}: Secure: ${sc.raw}`)
  assert.equal(sc.attrs['max-age'], String(maxAge), `${label}: Max-Age: ${sc.raw}`)
  assert.equal(sc.attrs.domain, undefined, `${label}: a Domain attribute would send the cookie to every app: ${sc.raw}`)
}

function assertCleared (res, label) {
  const sc = sessionSetCookie(res)
  assert.ok(sc, `${label}: no Set-Cookie clearing the session`)
  assert.equal(sc.attrs['max-age'], '0', `${label}: ${sc.raw}`)
  assert.equal(sc.attrs.path, '/', `${label}: ${sc.raw}`)
  assert.ok(!TOKEN_RE.test(sc.value), `${label}: a clearing cookie should not carry a token: ${sc.raw}`)
}

describe('user sessions', () => {
  before(async () => {
    host = await startHost()
  }, { timeout: 60000 })

  after(async () => {
    for (const h of [host, ...extraHosts]) await h?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  describe('first run: /_atek/setup', () => {
    let setupToken

    test('the host prints the setup URL with a token while there are no users', async () => {
      const line = await waitFor(() => host.hostOutput().split('\n').find((l) => l.includes('No users yet')),
        { timeout: 10000, message: 'the "No users yet" line in host.out' })
      const m = /No users yet\. Create the first admin at http:\/\/localhost:(\d+)\/_atek\/setup\?token=(\S+) \(or run: atek mkuser --admin\)/.exec(line)
      assert.ok(m, `unexpected line: ${line}`)
      assert.equal(Number(m[1]), host.port)
      setupToken = m[2]
    })

    test('GET /_atek/setup serves a self-contained HTML form', async () => {
      const r = await req(host, { path: '/_atek/setup?token=' + encodeURIComponent(setupToken) })
      assert.equal(r.status, 200)
      assert.match(r.headers['content-type'] ?? '', /text\/html/)
      assert.match(r.text, /password/i)
      assert.doesNotMatch(r.text, /<(script|link|img)[^>]+(src|href)=["']?(https?:)?\/\//i, 'external assets')
    })

    test('POST /_atek/setup: a wrong token -> 403 JSON, bad input -> 400 with the reason', async () => {
      const post = (body) => req(host, { method: 'POST', path: '/_atek/setup', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      const wrong = await post({ token: 'x' + setupToken, username: 'root', password: 'long-enough-pw' })
      assert.equal(wrong.status, 403, wrong.text)
      assert.equal(wrong.json?.error, true, wrong.text)
      assert.equal(typeof wrong.json?.message, 'string')
      assert.equal(sessionSetCookie(wrong), undefined)
      for (const body of [
        { token: setupToken, username: 'ab', password: 'long-enough-pw' },
        { token: setupToken, username: 'system', password: 'long-enough-pw' },
        { token: setupToken, username: 'root', password: 'short' }
      ]) {
        const r = await post(body)
        assert.equal(r.status, 400, `${JSON.stringify({ ...body, token: '…' })}: ${r.status} ${r.text}`)
        assert.equal(r.json?.error, true, r.text)
        assert.ok(r.json?.message, r.text)
      }
      assert.deepEqual((await typedUsers(host).list()).users, [])
    })

    test('POST /_atek/setup with the token creates an admin and logs them in; then it is closed', async () => {
      rootPw = randomPassword()
      const r = await req(host, { method: 'POST', path: '/_atek/setup', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: setupToken, username: 'root', password: rootPw }) })
      assert.equal(r.status, 200, r.text)
      assert.deepEqual(r.json, { username: 'root' })
      const sc = sessionSetCookie(r)
      assertSessionCookie(sc, 'setup')
      assert.deepEqual(await whoami(host, { cookie: sc.value }), { isActive: true, username: 'root' })
      const list = (await typedUsers(host).list()).users
      assert.equal(list.length, 1)
      assert.equal(list[0].role, 'admin')
      root = list[0]
      const again = await req(host, { method: 'POST', path: '/_atek/setup', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: setupToken, username: 'root2', password: randomPassword() }) })
      assert.equal(again.status, 403, again.text)
      assert.equal(again.json?.error, true)
      assert.equal((await typedUsers(host).list()).users.length, 1)
    })
  })

  describe('login, whoami, logout', () => {
    before(async () => {
      alicePw = randomPassword()
      alice = await createUser(host, { username: 'alice', password: alicePw })
    })

    test('GET /_atek/login and /_atek/login/ serve a self-contained login page', async () => {
      for (const p of ['/_atek/login', '/_atek/login/', '/_atek/login?redirect=%2Fx']) {
        const r = await req(host, { path: p })
        assert.equal(r.status, 200, `${p}: ${r.status}`)
        assert.match(r.headers['content-type'] ?? '', /text\/html/)
        assert.match(r.text, /user-sessions-api/, `${p}: the page should call user-sessions-api.login`)
        assert.doesNotMatch(r.text, /<(script|link|img)[^>]+(src|href)=["']?(https?:)?\/\//i, `${p}: external assets`)
      }
    })

    test('whoami() anonymous -> {isActive: false} (HTTP 200, no bearer, no cookie)', async () => {
      const r = await whoamiRaw(host)
      assert.equal(r.status, 200, r.text)
      assert.deepEqual(r.json, { jsonrpc: '2.0', id: 1, result: { isActive: false } })
    })

    test('the original typed client (default auth "Bearer undefined") is anonymous for whoami and can log in', async () => {
      const s = typedSessions(host)
      const w = await s.whoami()
      assert.ok(validateSession(w), JSON.stringify(w))
      assert.deepEqual(w, { isActive: false })
      await paceLogin(host)
      const l = await s.login({ username: 'alice', password: alicePw })
      assert.ok(validateSession(l), JSON.stringify(l))
      assert.deepEqual(l, { isActive: true, username: 'alice' })
    })

    test('login sets `session`: HttpOnly, Path=/, SameSite=None, Secure, Max-Age=30 days, no Domain', async () => {
      const r = await login(host, 'alice', alicePw)
      assert.equal(r.res.status, 200, r.res.text)
      assert.deepEqual(r.res.json, { jsonrpc: '2.0', id: 1, result: { isActive: true, username: 'alice' } })
      assert.equal(setCookies(r.res).filter((c) => c.name === 'session').length, 1)
      assertSessionCookie(r.setCookie, 'login')
    })

    test('the main-domain cookies parse with the original node-fetch-cookies (login, logout)', async () => {
      const r = await login(host, 'alice', alicePw)
      const c = new Cookie(r.setCookie.raw, `${mainOrigin(host)}/_atek/gateway`)
      assert.equal(c.name, 'session')
      assert.equal(c.value, r.cookie)
      assert.equal(c.path, '/')
      assert.ok(c.expiry instanceof Date && c.expiry > new Date())
      const out = await gateway(host, SESSIONS_API, 'logout', [], { cookie: r.cookie })
      const cleared = new Cookie(sessionSetCookie(out).raw, `${mainOrigin(host)}/_atek/gateway`)
      assert.ok(cleared.expiry instanceof Date && cleared.expiry <= new Date(), 'the logout cookie must be expired')
    })

    test('whoami before and after login; every login is a new session', async () => {
      assert.deepEqual(await whoami(host), { isActive: false })
      const c1 = await loginOk(host, 'alice', alicePw)
      const c2 = await loginOk(host, 'ALICE', alicePw) // usernames are case-insensitive
      assert.notEqual(c1, c2)
      assert.deepEqual(await whoami(host, { cookie: c1 }), { isActive: true, username: 'alice' })
      assert.deepEqual(await whoami(host, { cookie: c2 }), { isActive: true, username: 'alice' })
      assert.deepEqual(await whoami(host), { isActive: false })
    })

    test('logging in while holding a cookie (even one an attacker chose) gives a fresh token', async () => {
      const before = await loginOk(host, 'alice', alicePw)
      const planted = crypto.randomBytes(32).toString('base64url')
      for (const held of [before, planted]) {
        const r = await login(host, 'alice', alicePw, { headers: { cookie: `session=${held}` } })
        assert.ok(r.cookie, r.res.text)
        assert.notEqual(r.cookie, held)
      }
      assert.deepEqual(await whoami(host, { cookie: planted }), { isActive: false })
    })

    test('a wrong password or an unknown user: -32003 "Username or password was incorrect", no cookie', async () => {
      for (const [u, p] of [['alice', alicePw + 'x'], ['nobody', alicePw]]) {
        const r = await login(host, u, p)
        assert.equal(r.res.status, 200, r.res.text)
        assert.deepEqual(r.res.json, { jsonrpc: '2.0', id: 1, error: { code: -32003, message: 'Username or password was incorrect' } })
        assert.equal(r.setCookie, undefined, `no session cookie on a failed login: ${r.res.headers['set-cookie']}`)
      }
      assert.ok(await loginOk(host, 'alice', alicePw), 'the right password still works')
    })

    test('malformed login params: a JSON-RPC param error (-32001), never an HTTP error or a cookie', async () => {
      for (const params of [[], ['alice'], [null], [{ username: 'alice' }], [{ username: 5, password: 6 }]]) {
        await paceLogin(host)
        const r = await gateway(host, SESSIONS_API, 'login', params)
        assert.equal(r.status, 200, `${JSON.stringify(params)}: ${r.status} ${r.text}`)
        assert.equal(r.json?.error?.code, -32001, `${JSON.stringify(params)}: ${r.text}`)
        assert.equal(sessionSetCookie(r), undefined)
      }
    })

    test('logout clears the cookie (Max-Age=0) and the old cookie no longer works', async () => {
      const cookie = await loginOk(host, 'alice', alicePw)
      const other = await loginOk(host, 'alice', alicePw)
      const r = await gateway(host, SESSIONS_API, 'logout', [], { cookie })
      assert.equal(r.status, 200, r.text)
      assert.deepEqual(r.json, { jsonrpc: '2.0', id: 1, result: null })
      assertCleared(r, 'logout')
      assert.deepEqual(await whoami(host, { cookie }), { isActive: false })
      const again = await gateway(host, SESSIONS_API, 'logout', [], { cookie })
      assert.equal(again.status, 401, `logout with a dead cookie: ${again.text}`)
      const users = await gateway(host, USERS_API, 'get', [alice.key], { cookie })
      assert.equal(users.status, 401, users.text)
      // only that session ended
      assert.deepEqual(await whoami(host, { cookie: other }), { isActive: true, username: 'alice' })
    })

    test('logout without credentials -> 401 {"error":true,"message":"Not authorized"}', async () => {
      const r = await gateway(host, SESSIONS_API, 'logout', [])
      assert.equal(r.status, 401)
      assert.deepEqual(r.json, { error: true, message: 'Not authorized' })
    })

    test('browser-like flow with node-fetch-cookies: CookieJar + fetch', async () => {
      const jar = new BrowserJar()
      const agent = loopbackAgent()
      const rpc = async (method, params = []) => {
        const res = await cookieFetch(jar, `${mainOrigin(host)}/_atek/gateway?api=${encodeURIComponent(SESSIONS_API)}`, {
          method: 'POST', agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 7, method, params })
        })
        return { status: res.status, json: await res.json() }
      }
      assert.deepEqual((await rpc('whoami')).json.result, { isActive: false })
      // an unauthenticated page visit ends on the login page
      const visit = await browserFetch(jar, `${mainOrigin(host)}/dashboard`, { agent })
      assert.equal(visit.res.status, 200)
      assert.equal(new URL(visit.url).pathname, '/_atek/login')
      assert.equal(new URL(visit.url).searchParams.get('redirect'), '/dashboard')
      await paceLogin(host)
      const l = await rpc('login', [{ username: 'alice', password: alicePw }])
      assert.deepEqual(l.json.result, { isActive: true, username: 'alice' })
      assert.match(jar.get('localhost') ?? '', TOKEN_RE, 'the jar holds the session cookie for localhost')
      assert.deepEqual((await rpc('whoami')).json.result, { isActive: true, username: 'alice' })
      const out = await rpc('logout')
      assert.equal(out.json.result, null)
      assert.equal(jar.get('localhost'), undefined, 'logout expired the cookie in the jar')
      assert.deepEqual((await rpc('whoami')).json.result, { isActive: false })
    })

    test('sessions are stored hashed: no token in the server database', async () => {
      const cookie = await loginOk(host, 'alice', alicePw)
      const rows = await serverRows(host, 'atek.cloud/user-session')
      assert.ok(rows.length >= 1, 'the session is a row of atek.cloud/user-session')
      for (const row of rows) assert.match(row.tokenHash, /^[0-9a-f]{64}$/)
      const stored = storedBytes(host)
      assert.ok(!stored.includes(cookie), 'the session token is stored in clear')
      assert.ok(!stored.includes(Buffer.from(cookie, 'base64url').toString('hex')), 'the session token is stored (hex)')
      assert.ok(!fs.existsSync(path.join(host.dir, 'state', 'sessions.json')), 'no sessions file beside the database')
    })
  })

  describe('stale cookies are simply anonymous', () => {
    test('a password change ends every session of that user (whoami isActive false, never a 500)', async () => {
      const p1 = randomPassword()
      const bob = await createUser(host, { username: 'bob', password: p1 })
      const c1 = await loginOk(host, 'bob', p1)
      const c2 = await loginOk(host, 'bob', p1)
      const aliceCookie = await loginOk(host, 'alice', alicePw)
      const p2 = randomPassword()
      await typedUsers(host).update(bob.key, { password: p2 })
      for (const c of [c1, c2]) {
        const r = await whoamiRaw(host, { cookie: c })
        assert.equal(r.status, 200, r.text)
        assert.deepEqual(r.json.result, { isActive: false })
        const g = await gateway(host, USERS_API, 'get', [bob.key], { cookie: c })
        assert.equal(g.status, 401, g.text)
      }
      assert.deepEqual(await whoami(host, { cookie: aliceCookie }), { isActive: true, username: 'alice' }, 'other users keep their sessions')
      assert.deepEqual(await whoami(host, { cookie: await loginOk(host, 'bob', p2) }), { isActive: true, username: 'bob' })
    })

    test('deleting a user ends their sessions', async () => {
      const p = randomPassword()
      const carol = await createUser(host, { username: 'carol', password: p })
      const c = await loginOk(host, 'carol', p)
      assert.deepEqual(await whoami(host, { cookie: c }), { isActive: true, username: 'carol' })
      await typedUsers(host).delete(carol.key)
      const r = await whoamiRaw(host, { cookie: c })
      assert.equal(r.status, 200, r.text)
      assert.deepEqual(r.json.result, { isActive: false })
      const page = await req(host, { path: '/', cookie: c })
      assert.equal(page.status, 302, `GET / with a deleted user's cookie: ${page.status}`)
      // a new user with the same name does not inherit the old cookie
      await createUser(host, { username: 'carol', password: randomPassword() })
      assert.deepEqual(await whoami(host, { cookie: c }), { isActive: false })
    })

    test('garbage cookies are anonymous, never an error', async () => {
      const variants = [
        'session=garbage',
        'session=',
        'session=' + crypto.randomBytes(32).toString('base64url'),
        'session=' + 'A'.repeat(4000),
        'session="quoted"',
        'session=%00%ff; other=1',
        'session=a; session=b',
        'other=1; session=' + crypto.randomBytes(32).toString('base64url')
      ]
      for (const cookie of variants) {
        const r = await whoamiRaw(host, { cookie })
        assert.equal(r.status, 200, `${cookie.slice(0, 40)}: ${r.status} ${r.text.slice(0, 200)}`)
        assert.deepEqual(r.json.result, { isActive: false }, cookie.slice(0, 40))
        const page = await req(host, { path: '/x', cookie })
        assert.equal(page.status, 302, `GET /x with ${cookie.slice(0, 40)}: ${page.status}`)
        const app = await req(host, { path: '/x', cookie, hostHeader: `someapp.${mainHost(host)}` })
        assert.ok([302, 404].includes(app.status), `subdomain with ${cookie.slice(0, 40)}: ${app.status}`)
      }
    })

    test('a bearer token wins over a stale or valid cookie', async () => {
      const stale = crypto.randomBytes(32).toString('base64url')
      const list = await call(host, USERS_API, 'list', [], { bearer: host.token, cookie: stale })
      assert.ok(list.users.length >= 2)
      // with alice's (valid, non-admin) cookie next to the system token, the system token counts
      const aliceCookie = await loginOk(host, 'alice', alicePw)
      const list2 = await call(host, USERS_API, 'list', [], { bearer: host.token, cookie: aliceCookie })
      assert.ok(list2.users.length >= 2)
      // the original typed client (bearer only) next to a cookie header is irrelevant: plain bearer
      assert.ok((await typedUsers(host).list()).users.length >= 2)
    })

    test('a cookie after logout, deletion or password change does not turn into an error on /_atek/* pages', async () => {
      const c = await loginOk(host, 'alice', alicePw)
      await gateway(host, SESSIONS_API, 'logout', [], { cookie: c })
      for (const p of ['/_atek/login', '/_atek/bind-session?service=nope&path=%2F', '/_atek/bind-session?service=app&path=%2F&nonce=abc']) {
        const r = await req(host, { path: p, cookie: c })
        assert.ok(r.status < 500, `${p}: ${r.status}`)
      }
    })
  })

  describe('cookie attributes on other domains and schemes', () => {
    let h2
    let pw2

    before(async () => {
      h2 = await startHost({ config: { domain: 'atek.example.com' } })
      extraHosts.push(h2)
      pw2 = randomPassword()
      await createUser(h2, { username: 'dora', password: pw2 })
      const info = await install(h2, { id: 'app', sourceUrl: fixtureUrl('sub-echo') })
      assert.equal(info.status, 'active', JSON.stringify(info))
    }, { timeout: 90000 })

    test('plain http on another name: SameSite=Lax, not Secure', async () => {
      const r = await login(h2, 'dora', pw2, { hostHeader: mainHost(h2, 'atek.example.com') })
      assert.equal(r.res.status, 200, r.res.text)
      assertSessionCookie(r.setCookie, 'http atek.example.com', { secure: false, sameSite: 'Lax' })
    })

    test('TLS in front (X-Forwarded-Proto: https from loopback): SameSite=Lax; Secure', async () => {
      const r = await login(h2, 'dora', pw2, { hostHeader: mainHost(h2, 'atek.example.com'), headers: { 'x-forwarded-proto': 'https' } })
      assert.equal(r.res.status, 200, r.res.text)
      assertSessionCookie(r.setCookie, 'https atek.example.com', { secure: true, sameSite: 'Lax' })
    })

    test('a multi-label domain routes app.atek.example.com; redirects use the domain and keep the port', async () => {
      const r = await req(h2, { path: '/x?y=1', hostHeader: `app.atek.example.com:${h2.port}` })
      assert.equal(r.status, 302, `${r.status} ${r.text.slice(0, 200)}`)
      assert.ok(r.headers.location.startsWith(`http://atek.example.com:${h2.port}/_atek/bind-session?service=app&path=%2Fx%3Fy%3D1&nonce=`), r.headers.location)
      const unknown = await req(h2, { path: '/', hostHeader: `nope.atek.example.com:${h2.port}`, bearer: h2.token })
      assert.equal(unknown.status, 404, `${unknown.status} ${unknown.headers.location ?? ''}`)
      assert.match(unknown.text, /No app is installed at nope\.atek\.example\.com/)
      // a full login + bind on this domain reaches the app
      const cookie = await loginOk(h2, 'dora', pw2, { hostHeader: mainHost(h2, 'atek.example.com') })
      const { cookie: appCookie, location } = await bindApp(h2, cookie, 'app', '/x?y=1', { domain: 'atek.example.com' })
      assert.equal(location, `http://app.atek.example.com:${h2.port}/x?y=1`)
      const ok = await req(h2, { path: '/x?y=1', hostHeader: `app.atek.example.com:${h2.port}`, cookie: appCookie })
      assert.equal(ok.status, 200, ok.text.slice(0, 200))
      assert.equal(ok.json.url, '/x?y=1')
      const main = await req(h2, { path: '/page', hostHeader: mainHost(h2, 'atek.example.com') })
      assert.equal(main.status, 302)
      const loc = new URL(main.headers.location, `http://atek.example.com:${h2.port}/page`)
      assert.equal(loc.host, `atek.example.com:${h2.port}`)
      assert.equal(loc.pathname, '/_atek/login')
    })
  })

  describe('session expiry (sessionTtl)', () => {
    let h3
    let pw3

    before(async () => {
      h3 = await startHost({ config: { sessionTtl: '2s' } })
      extraHosts.push(h3)
      pw3 = randomPassword()
      await createUser(h3, { username: 'erin', password: pw3 })
    }, { timeout: 60000 })

    test('Max-Age follows sessionTtl and an expired session is anonymous', async () => {
      const r = await login(h3, 'erin', pw3)
      assertSessionCookie(r.setCookie, 'ttl 2s', { maxAge: 2 })
      assert.deepEqual(await whoami(h3, { cookie: r.cookie }), { isActive: true, username: 'erin' })
      await sleep(3000)
      const w = await whoamiRaw(h3, { cookie: r.cookie })
      assert.equal(w.status, 200)
      assert.deepEqual(w.json.result, { isActive: false })
    })
  })
})
