// Apps on their own subdomain (reference §1.6 steps 5-7, §3.6, §8.1; spec: host routing, the
// bind-session chain with a non-default port, the proxy, WebSockets, CSRF).
//
// The host listens on a port the OS picked (never 80), so every redirect must carry it. All
// requests go to 127.0.0.1; `app.localhost:PORT` etc. only appear in Host headers (plain http)
// or in URLs that `loopbackAgent()` resolves to 127.0.0.1 (node-fetch-cookies).
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import http from 'node:http'

import WebSocket from 'ws'
import { fetch as cookieFetch } from '@atek-cloud/node-fetch-cookies'

import {
  startHost, fixtureUrl, install, getService, servicesClient, testWithHost, removeTempDirs,
  waitForService, withTimeout, streamUpload
} from './lib/host.mjs'
import {
  SESSIONS_API, USERS_API, createUser, gateway, loginOk, typedUsers, whoami, req, sessionSetCookie, setCookies,
  appSetCookie, mintBst, APP_COOKIE, BIND_COOKIE,
  bindApp, mainHost, appHost, mainOrigin, appOrigin, loopbackAgent, BrowserJar, browserFetch,
  paceLogin, randomPassword, resolveLocation
} from './lib/users.mjs'

let host
const test = testWithHost(() => host)

let alice, alicePw, aliceCookie
const apps = {} // id -> ServiceInfo

const bindPrefix = (service, p, origin = mainOrigin(host)) => `${origin}/_atek/bind-session?service=${encodeURIComponent(service)}&path=${encodeURIComponent(p)}&nonce=`
const hasHostCookie = (cookieHeader) => /(^|;\s*)(atek-session|atek-bind)=/.test(cookieHeader ?? '')
const NONCE = 'n'.repeat(43) // a nonce for bind-session calls that never redeem their bst

/** `/_atek/bind-session?service=…&path=…&nonce=…` */
const bindSessionPath = (service, p, nonce = NONCE) => '/_atek/bind-session?' + new URLSearchParams({ service, path: p, nonce })

/** Opens a WebSocket through the subdomain (`cookie` is a Cookie header); resolves {sock, messages} once open. */
function openAppWs (appId, { cookie, headers = {}, path: p = '/ws' } = {}) {
  const h = { host: appHost(host, appId), ...headers }
  if (cookie) h.cookie = cookie
  const sock = new WebSocket(`ws://127.0.0.1:${host.port}${p}`, { headers: h, handshakeTimeout: 5000, maxPayload: 64 << 20 })
  const messages = []
  sock.on('message', (data, isBinary) => messages.push({ data: Buffer.from(data), isBinary }))
  sock.on('error', () => {})
  return withTimeout(new Promise((resolve, reject) => {
    sock.once('open', () => resolve({ sock, messages }))
    sock.once('unexpected-response', (_req, res) => {
      const e = new Error(`upgrade refused: HTTP ${res.statusCode}`)
      e.status = res.statusCode
      reject(e)
    })
    sock.once('error', reject)
  }), 8000, 'WebSocket open')
}

async function nextMessage (messages, n, label) {
  const deadline = Date.now() + 10000
  while (messages.length < n) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for WebSocket message #${n} (${label})`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return messages[n - 1]
}

describe('subdomain apps', () => {
  before(async () => {
    host = await startHost()
    alicePw = randomPassword()
    alice = await createUser(host, { username: 'alice', password: alicePw })
    await createUser(host, { username: 'root', password: randomPassword(), role: 'admin' })
    for (const id of ['app', 'app2', 'core.dotted', 'stopper']) {
      apps[id] = await install(host, { id, sourceUrl: fixtureUrl('sub-echo') })
      assert.equal(apps[id].status, 'active', JSON.stringify(apps[id]))
    }
    apps['ws-echo'] = await install(host, { id: 'ws-echo', sourceUrl: fixtureUrl('ws-echo') })
    assert.equal(apps['ws-echo'].status, 'active', JSON.stringify(apps['ws-echo']))
    aliceCookie = await loginOk(host, 'alice', alicePw)
  }, { timeout: 120000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  describe('the bind-session chain', () => {
    test('step by step with plain http, on the non-default port', async () => {
      assert.notEqual(host.port, 80)
      const P = host.port
      // 1. unauthenticated app request -> bind-session on the main domain, port kept; the
      //    browser gets a nonce cookie on the app's subdomain that the bst will be tied to
      const r1 = await req(host, { hostHeader: appHost(host, 'app'), path: '/x?y=1' })
      assert.equal(r1.status, 302, r1.text.slice(0, 200))
      const prefix = `http://localhost:${P}/_atek/bind-session?service=app&path=%2Fx%3Fy%3D1`
      assert.ok(r1.headers.location.startsWith(prefix + '&nonce='), `Location: ${r1.headers.location}`)
      const bind = new URL(r1.headers.location)
      const nonce = bind.searchParams.get('nonce')
      assert.ok(nonce && nonce.length >= 16, `nonce: ${nonce}`)
      assert.deepEqual([...bind.searchParams.keys()], ['service', 'path', 'nonce'])
      const nc = setCookies(r1).find((c) => c.name === BIND_COOKIE)
      assert.ok(nc, `no ${BIND_COOKIE} cookie: ${JSON.stringify(r1.headers['set-cookie'])}`)
      assert.equal(nc.value, nonce)
      assert.equal(nc.attrs.httponly, true)
      assert.equal(nc.attrs.domain, undefined)
      assert.equal(sessionSetCookie(r1), undefined)
      assert.equal(appSetCookie(r1), undefined)

      // 2. bind-session without a main-domain session -> the login page, coming back here after
      const r2 = await req(host, { path: bind.pathname + bind.search })
      assert.equal(r2.status, 302, r2.text.slice(0, 200))
      const loginUrl = new URL(r2.headers.location, bind.href)
      assert.equal(loginUrl.host, `localhost:${P}`)
      assert.equal(loginUrl.pathname, '/_atek/login')
      const back = loginUrl.searchParams.get('redirect')
      assert.ok(back && (back.startsWith('/_atek/bind-session?') || back.startsWith(`http://localhost:${P}/_atek/bind-session?`)), `redirect=${back}`)
      assert.equal(new URL(back, `http://localhost:${P}/`).href, bind.href, 'the login page must come back to the same bind-session URL')
      const page = await req(host, { path: loginUrl.pathname + loginUrl.search })
      assert.equal(page.status, 200)

      // 3. log in (what the login page does), then bind-session -> the app with a bst
      const cookie = await loginOk(host, 'alice', alicePw)
      const r3 = await req(host, { path: bind.pathname + bind.search, cookie })
      assert.equal(r3.status, 302, r3.text.slice(0, 200))
      assert.match(r3.headers.location, new RegExp(`^http://app\\.localhost:${P}/x\\?y=1&bst=[^&]+$`))
      const withBst = new URL(r3.headers.location)
      const bst = withBst.searchParams.get('bst')
      assert.ok(bst.length >= 16, `bst too short: ${bst}`)
      assert.equal(sessionSetCookie(r3), undefined, 'bind-session must not set a cookie on the main domain')

      // 4. the bst (with the nonce cookie) sets a cookie bound to the app and redirects to the
      //    URL without bst
      const r4 = await req(host, { hostHeader: withBst.host, path: withBst.pathname + withBst.search, cookie: `${BIND_COOKIE}=${nonce}` })
      assert.equal(r4.status, 302, r4.text.slice(0, 200))
      assert.equal(resolveLocation(r4.headers.location, withBst.href), `http://app.localhost:${P}/x?y=1`)
      const sc = appSetCookie(r4)
      assert.ok(sc, `no ${APP_COOKIE} cookie from the bst: ${JSON.stringify(r4.headers['set-cookie'])}`)
      assert.match(sc.value, /^[A-Za-z0-9_-]{43}$/)
      assert.notEqual(sc.value, cookie, 'the app cookie must be a new (child) session, not the main one')
      assert.equal(sc.attrs.httponly, true)
      assert.equal(sc.attrs.path, '/')
      assert.equal(String(sc.attrs.samesite).toLowerCase(), 'none')
      assert.equal(sc.attrs.secure, true)
      assert.equal(sc.attrs.domain, undefined)
      assert.equal(sc.attrs['max-age'], String(30 * 24 * 3600))
      assert.equal(sessionSetCookie(r4), undefined, 'the app subdomain must not set the host\'s `session` cookie')
      const cleared = setCookies(r4).find((c) => c.name === BIND_COOKIE)
      assert.equal(cleared?.attrs['max-age'], '0', 'the nonce cookie is cleared once used')

      // 5. the app answers, seeing the user and its own service key
      const r5 = await req(host, { hostHeader: appHost(host, 'app'), path: '/x?y=1', cookie: `${APP_COOKIE}=${sc.value}` })
      assert.equal(r5.status, 200, r5.text.slice(0, 200))
      assert.equal(r5.json.serviceKey, apps.app.key)
      assert.equal(r5.json.method, 'GET')
      assert.equal(r5.json.url, '/x?y=1')
      assert.equal(r5.json.headers['atek-auth-user'], alice.key)
      assert.equal(r5.json.headers['atek-auth-service'], apps.app.key)
    })

    test('browser-like with node-fetch-cookies: one visit before login, one after', async () => {
      const jar = new BrowserJar()
      const agent = loopbackAgent()
      const target = `${appOrigin(host, 'app')}/x?y=1`
      const first = await browserFetch(jar, target, { agent })
      assert.deepEqual(first.hops.map((h) => h.status), [302, 302, 200], JSON.stringify(first.hops))
      assert.equal(new URL(first.url).pathname, '/_atek/login')
      // the login page's call
      await paceLogin(host)
      const res = await cookieFetch(jar, `${mainOrigin(host)}/_atek/gateway?api=${encodeURIComponent(SESSIONS_API)}`, {
        method: 'POST', agent, headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'login', params: [{ username: 'alice', password: alicePw }] })
      })
      assert.deepEqual((await res.json()).result, { isActive: true, username: 'alice' })
      // then the page goes to `redirect` (the bind-session URL)
      const redirect = new URL(first.url).searchParams.get('redirect')
      const second = await browserFetch(jar, new URL(redirect, first.url).href, { agent })
      assert.deepEqual(second.hops.map((h) => h.status), [302, 302, 200], JSON.stringify(second.hops))
      assert.equal(second.url, target)
      const body = await second.res.json()
      assert.equal(body.headers['atek-auth-user'], alice.key)
      assert.equal(body.headers['atek-auth-service'], apps.app.key)
      assert.ok(jar.get('app.localhost', APP_COOKIE), 'the jar holds an app cookie for app.localhost')
      assert.equal(jar.get('app.localhost', 'session'), undefined)
      // a later visit goes straight to the app
      const third = await browserFetch(jar, `${appOrigin(host, 'app')}/again`, { agent })
      assert.deepEqual(third.hops.map((h) => h.status), [200])
      // a second app needs its own binding, without a new login
      const other = await browserFetch(jar, `${appOrigin(host, 'app2')}/`, { agent })
      assert.deepEqual(other.hops.map((h) => h.status), [302, 302, 302, 200], JSON.stringify(other.hops))
      assert.equal((await other.res.json()).serviceKey, apps.app2.key)
    })

    test('a bst is single-use', async () => {
      const { bst, bindCookie } = await mintBst(host, aliceCookie, 'app', '/once')
      const first = await req(host, { hostHeader: appHost(host, 'app'), path: '/once?bst=' + bst, cookie: bindCookie })
      assert.equal(first.status, 302)
      assert.ok(appSetCookie(first)?.value)
      const again = await req(host, { hostHeader: appHost(host, 'app'), path: '/once?bst=' + bst, cookie: bindCookie })
      assert.equal(appSetCookie(again), undefined, 'a used bst minted a second session')
      assert.equal(again.status, 302)
    })

    test('a bst works only in the browser that asked for it (the nonce cookie): no login planting', async () => {
      // an attacker's bst, sent to a victim as a link: the victim's browser has no (or another) nonce
      for (const cookie of [undefined, `${BIND_COOKIE}=${NONCE}`]) {
        const { bst } = await mintBst(host, aliceCookie, 'app', '/plant')
        const r = await req(host, { hostHeader: appHost(host, 'app'), path: '/plant?bst=' + bst, cookie })
        assert.equal(appSetCookie(r), undefined, `a bst without its nonce (${cookie}) minted a session`)
        assert.equal(r.status, 302)
        assert.equal(resolveLocation(r.headers.location, appOrigin(host, 'app')), `${appOrigin(host, 'app')}/plant`, 'the bst is taken out of the URL')
      }
      // a bst tried without its nonce is spent
      const { bst, bindCookie } = await mintBst(host, aliceCookie, 'app', '/plant')
      await req(host, { hostHeader: appHost(host, 'app'), path: '/plant?bst=' + bst })
      const late = await req(host, { hostHeader: appHost(host, 'app'), path: '/plant?bst=' + bst, cookie: bindCookie })
      assert.equal(appSetCookie(late), undefined)
      // bind-session without a nonce refuses to mint
      const noNonce = await req(host, { path: '/_atek/bind-session?service=app&path=%2F', cookie: aliceCookie })
      assert.equal(noNonce.status, 400, `bind-session without a nonce: ${noNonce.status} ${noNonce.headers.location ?? ''}`)
    })

    test('a bst is bound to its service: it does nothing on another app or on the main domain', async () => {
      const a = await mintBst(host, aliceCookie, 'app', '/')
      const other = await req(host, { hostHeader: appHost(host, 'app2'), path: '/?bst=' + a.bst, cookie: a.bindCookie })
      assert.equal(appSetCookie(other), undefined, 'a bst for app authenticated app2')
      assert.equal(other.status, 302)
      const b = await mintBst(host, aliceCookie, 'app', '/')
      const main = await req(host, { path: '/?bst=' + b.bst, cookie: b.bindCookie })
      assert.equal(sessionSetCookie(main), undefined, 'a bst minted a main-domain session')
      assert.equal(main.status, 302)
      assert.equal(new URL(main.headers.location, mainOrigin(host)).pathname, '/_atek/login')
      const made = await req(host, { hostHeader: appHost(host, 'app'), path: '/?bst=' + crypto.randomBytes(32).toString('base64url'), cookie: b.bindCookie })
      assert.equal(appSetCookie(made), undefined, 'a made-up bst minted a session')
      assert.equal(made.status, 302)
    })

    test('bind-session: the path must start with a single "/" (no open redirect)', async () => {
      for (const [p, expectedPath] of [['//evil.example/x', '/'], ['http://evil.example/', '/'], ['x', '/'], ['', '/'], ['/\\evil.example', null], ['/ok?a=1&b=2', '/ok']]) {
        const r = await req(host, { path: bindSessionPath('app', p), cookie: aliceCookie })
        assert.equal(r.status, 302, `${p}: ${r.status}`)
        const u = new URL(r.headers.location)
        assert.equal(u.host, appHost(host, 'app'), `${p}: ${r.headers.location}`)
        if (expectedPath) assert.equal(u.pathname, expectedPath, `${p}: ${r.headers.location}`)
      }
      const noPath = await req(host, { path: '/_atek/bind-session?service=app&nonce=' + NONCE, cookie: aliceCookie })
      assert.equal(noPath.status, 302)
      assert.equal(new URL(noPath.headers.location).pathname, '/')
    })

    test('bind-session for an unknown service -> 404; the dotted id core.dotted works', async () => {
      const r = await req(host, { path: bindSessionPath('nope', '/'), cookie: aliceCookie })
      assert.equal(r.status, 404)
      assert.equal(r.headers.location, undefined)
      const anon = await req(host, { path: bindSessionPath('nope', '/') })
      assert.ok([302, 404].includes(anon.status))
      const first = await req(host, { hostHeader: appHost(host, 'core.dotted'), path: '/d' })
      assert.ok(first.headers.location.startsWith(`http://localhost:${host.port}/_atek/bind-session?service=core.dotted&path=%2Fd&nonce=`), first.headers.location)
      const { cookie } = await bindApp(host, aliceCookie, 'core.dotted', '/d')
      const ok = await req(host, { hostHeader: appHost(host, 'core.dotted'), path: '/d', cookie })
      assert.equal(ok.status, 200)
      assert.equal(ok.json.serviceKey, apps['core.dotted'].key)
    })

    test('cookies are bound: an app cookie is foreign to another app and to the main domain; the main cookie to apps', async () => {
      const { cookie, token } = await bindApp(host, aliceCookie, 'app')
      const onApp2 = await req(host, { hostHeader: appHost(host, 'app2'), path: '/', cookie })
      assert.equal(onApp2.status, 302, `app cookie on app2: ${onApp2.status}`)
      // the app's token presented as the host's `session` cookie
      assert.deepEqual(await whoami(host, { cookie: token }), { isActive: false }, 'an app token must not act on the main domain')
      const users = await gateway(host, USERS_API, 'get', [alice.key], { cookie: token })
      assert.equal(users.status, 401, 'an app token must not call host APIs on the main domain')
      // the main token presented as the app's cookie, or under the host's name, on the subdomain
      for (const c of [`${APP_COOKIE}=${aliceCookie}`, `session=${aliceCookie}`]) {
        const mainOnApp = await req(host, { hostHeader: appHost(host, 'app'), path: '/', cookie: c })
        assert.equal(mainOnApp.status, 302, `main token on app (${c.split('=')[0]}): ${mainOnApp.status}`)
      }
    })

    test('a bst is bound to its session: after logout it no longer authenticates', async () => {
      const parent = await loginOk(host, 'alice', alicePw)
      const { bst, bindCookie } = await mintBst(host, parent, 'app', '/b')
      await gateway(host, SESSIONS_API, 'logout', [], { cookie: parent })
      const used = await req(host, { hostHeader: appHost(host, 'app'), path: '/b?bst=' + bst, cookie: bindCookie })
      assert.equal(appSetCookie(used), undefined, 'a bst outlived the session that minted it')
      assert.equal(used.status, 302)
    })

    test('a password change ends the app (child) sessions too', async () => {
      const p = randomPassword()
      const frank = await createUser(host, { username: 'frank', password: p })
      const parent = await loginOk(host, 'frank', p)
      const { cookie } = await bindApp(host, parent, 'app')
      assert.equal((await req(host, { hostHeader: appHost(host, 'app'), path: '/', cookie })).status, 200)
      await typedUsers(host).update(frank.key, { password: randomPassword() })
      const after = await req(host, { hostHeader: appHost(host, 'app'), path: '/', cookie })
      assert.equal(after.status, 302, `an app cookie survived a password change: ${after.status}`)
      await typedUsers(host).delete(frank.key)
    })

    test('child sessions die with their parent (logout on the main domain)', async () => {
      const parent = await loginOk(host, 'alice', alicePw)
      const { cookie } = await bindApp(host, parent, 'app')
      assert.equal((await req(host, { hostHeader: appHost(host, 'app'), path: '/', cookie })).status, 200)
      const out = await gateway(host, SESSIONS_API, 'logout', [], { cookie: parent })
      assert.equal(out.status, 200, out.text)
      const after = await req(host, { hostHeader: appHost(host, 'app'), path: '/', cookie })
      assert.equal(after.status, 302, `the app cookie outlived its parent session: ${after.status}`)
    })
  })

  describe('host routing', () => {
    test('the Host header is matched without case; a Host without a port gives redirects without one', async () => {
      const upper = await req(host, { hostHeader: `APP.LOCALHOST:${host.port}`, path: '/p?q=1' })
      assert.equal(upper.status, 302)
      assert.ok(upper.headers.location.startsWith(`http://localhost:${host.port}/_atek/bind-session?service=app&path=%2Fp%3Fq%3D1&nonce=`), upper.headers.location)
      const noPort = await req(host, { hostHeader: 'app.localhost', path: '/p' })
      assert.equal(noPort.status, 302)
      assert.ok(noPort.headers.location.startsWith('http://localhost/_atek/bind-session?service=app&path=%2Fp&nonce='), noPort.headers.location)
    })

    test('an IP address or a name outside the domain is the main domain', async () => {
      for (const h of [`127.0.0.1:${host.port}`, `example.org:${host.port}`, `appx-localhost:${host.port}`]) {
        const r = await req(host, { hostHeader: h, path: '/p?q=1' })
        assert.equal(r.status, 302, `${h}: ${r.status}`)
        const loc = new URL(r.headers.location, `http://${h}/`)
        assert.equal(loc.pathname, '/_atek/login', `${h}: ${r.headers.location}`)
        assert.equal(loc.searchParams.get('redirect'), '/p?q=1')
        assert.deepEqual(await whoami(host, { hostHeader: h }), { isActive: false })
      }
    })
  })

  describe('the proxy', () => {
    let appCookie

    before(async () => {
      appCookie = (await bindApp(host, aliceCookie, 'app')).cookie
    })

    test('forged atek-auth-* request headers never reach the app (cookie and bearer)', async () => {
      const forged = { 'atek-auth-user': 'mallory', 'Atek-Auth-Service': 'mallory-svc', 'ATEK-AUTH-EXTRA': 'x' }
      const r = await req(host, { hostHeader: appHost(host, 'app'), path: '/f', cookie: appCookie, headers: forged })
      assert.equal(r.status, 200)
      assert.equal(r.json.headers['atek-auth-user'], alice.key)
      assert.equal(r.json.headers['atek-auth-service'], apps.app.key)
      assert.deepEqual(Object.keys(r.json.headers).filter((k) => k.startsWith('atek-auth-')).sort(), ['atek-auth-service', 'atek-auth-user'])
      const b = await req(host, { hostHeader: appHost(host, 'app'), path: '/f', bearer: host.token, headers: forged })
      assert.equal(b.status, 200)
      assert.equal(b.json.headers['atek-auth-user'], 'system')
      assert.equal(b.json.headers['atek-auth-service'], 'system')
      assert.deepEqual(Object.keys(b.json.headers).filter((k) => k.startsWith('atek-auth-')).sort(), ['atek-auth-service', 'atek-auth-user'])
      // unauthenticated with forged headers: still the redirect, never the app
      const anon = await req(host, { hostHeader: appHost(host, 'app'), path: '/f', headers: forged })
      assert.equal(anon.status, 302)
    })

    test('the host\'s cookies are removed from the Cookie header the app sees; the app\'s own (even `session`) pass', async () => {
      const r = await req(host, { hostHeader: appHost(host, 'app'), path: '/c', cookie: `a=1; ${appCookie}; session=apps-own; ${BIND_COOKIE}=x; b=two` })
      assert.equal(r.status, 200)
      const seen = r.json.headers.cookie ?? ''
      assert.ok(!hasHostCookie(seen), `the app saw a host cookie: ${seen}`)
      assert.ok(!seen.includes(appCookie.split('=')[1]), `the app saw the session token: ${seen}`)
      assert.match(seen, /(^|;\s*)a=1(;|$)/)
      assert.match(seen, /(^|;\s*)b=two(;|$)/)
      assert.match(seen, /(^|;\s*)session=apps-own(;|$)/, 'an app keeps its own `session` cookie')
      const only = await req(host, { hostHeader: appHost(host, 'app'), path: '/c', cookie: appCookie })
      assert.ok(!hasHostCookie(only.json.headers.cookie), `only-session cookie header: ${only.json.headers.cookie}`)
    })

    test('the app cookie is removed even when the Cookie header is sent as several lines', async () => {
      const r = await withTimeout(new Promise((resolve, reject) => {
        const rq = http.request({ host: '127.0.0.1', port: host.port, path: '/mc', agent: false })
        rq.setHeader('host', appHost(host, 'app'))
        rq.setHeader('cookie', ['a=1', appCookie, 'b=2'])
        rq.on('response', (res) => {
          let b = ''
          res.on('data', (c) => { b += c })
          res.on('end', () => resolve({ status: res.statusCode, text: b }))
        })
        rq.on('error', reject)
        rq.end()
      }), 10000, 'request')
      assert.equal(r.status, 200, r.text.slice(0, 200))
      const seen = JSON.parse(r.text).headers.cookie ?? ''
      assert.ok(!seen.includes(appCookie.split('=')[1]), `the app saw the session token: ${seen}`)
      assert.match(seen, /a=1/)
      assert.match(seen, /b=2/)
    })

    test('bearer on a subdomain: the caller\'s identity, and the token is not passed to the app', async () => {
      const r = await req(host, { hostHeader: appHost(host, 'app'), path: '/t', bearer: host.token })
      assert.equal(r.status, 200)
      assert.equal(r.json.headers['atek-auth-user'], 'system')
      assert.equal(r.json.headers['atek-auth-service'], 'system')
      assert.ok(!JSON.stringify(r.json.headers).includes(host.token), 'the system token reached the app')
    })

    test('method, path, query, headers and a small body arrive as sent; X-Forwarded-* are set', async () => {
      const body = JSON.stringify({ hello: 'world', n: 42 })
      const r = await req(host, {
        method: 'PUT', hostHeader: appHost(host, 'app'), path: '/a/b%20c?q=1&q=2&e=%2F', cookie: appCookie, body,
        headers: { 'content-type': 'application/json', 'x-custom': 'yes' }
      })
      assert.equal(r.status, 200, r.text.slice(0, 200))
      assert.equal(r.json.method, 'PUT')
      assert.equal(r.json.url, '/a/b%20c?q=1&q=2&e=%2F')
      assert.equal(r.json.body, body)
      assert.equal(r.json.headers['x-custom'], 'yes')
      assert.equal(r.json.headers['content-type'], 'application/json')
      assert.equal(r.json.headers['x-forwarded-host'], appHost(host, 'app'))
      assert.equal(r.json.headers['x-forwarded-proto'], 'http')
      assert.match(r.json.headers['x-forwarded-for'] ?? '', /127\.0\.0\.1/)
    })

    test('an 8 MiB streamed (chunked) upload arrives intact', { timeout: 120000 }, async () => {
      const size = 8 << 20
      const r = await streamUpload({ port: host.port, headers: { host: appHost(host, 'app'), cookie: appCookie }, size })
      assert.equal(r.status, 200, r.text.slice(0, 200))
      assert.equal(r.json.bodyLength, size)
      assert.equal(r.json.bodySha256, r.sha256)
    })

    test('an 8 MiB response arrives intact', { timeout: 120000 }, async () => {
      const size = 8 << 20
      const r = await withTimeout(new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: host.port, path: `/blob?size=${size}`, agent: false, headers: { host: appHost(host, 'app'), cookie: appCookie } }, (res) => {
          const hash = crypto.createHash('sha256')
          let n = 0
          res.on('data', (c) => { hash.update(c); n += c.length })
          res.on('end', () => resolve({ status: res.statusCode, n, sha: hash.digest('hex') }))
          res.on('error', reject)
        }).on('error', reject)
      }), 60000, 'download')
      const expected = crypto.createHash('sha256')
      const chunk = Buffer.alloc(251 * 256)
      for (let i = 0; i < chunk.length; i++) chunk[i] = i % 251
      for (let sent = 0; sent < size;) { const k = Math.min(chunk.length, size - sent); expected.update(chunk.subarray(0, k)); sent += k }
      assert.equal(r.status, 200)
      assert.equal(r.n, size)
      assert.equal(r.sha, expected.digest('hex'))
    })

    test('a response is passed on as the app writes it, not once it ends', { timeout: 60000 }, async () => {
      const headers = { host: appHost(host, 'app'), cookie: appCookie }
      const res = await withTimeout(new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: host.port, path: '/drip', agent: false, headers }, resolve).on('error', reject)
      }), 10000, 'the response head')
      assert.equal(res.statusCode, 200)
      const chunks = []
      const ended = new Promise((resolve, reject) => { res.on('end', resolve); res.on('error', reject) })
      // The app holds the rest back until /release: the first line must arrive without it.
      const first = await withTimeout(new Promise((resolve) => res.once('data', (c) => { chunks.push(c); resolve(c.toString()) })), 10000,
        'the first line while the app still holds the response open (a buffering proxy waits for the end)')
      assert.equal(first, 'first\n')
      res.on('data', (c) => chunks.push(c))
      const release = await req(host, { method: 'POST', hostHeader: appHost(host, 'app'), path: '/release', cookie: appCookie, headers: { origin: `http://${appHost(host, 'app')}` } })
      assert.equal(release.status, 200, release.text.slice(0, 200))
      assert.ok(release.json.released >= 1)
      await withTimeout(ended, 10000, 'the rest of the response')
      assert.equal(Buffer.concat(chunks).toString(), 'first\nlast\n')
    })

    test('a request body is passed on as the client sends it, not once it ends', { timeout: 60000 }, async () => {
      const request = http.request({
        host: '127.0.0.1',
        port: host.port,
        method: 'POST',
        path: '/early',
        agent: false,
        headers: { host: appHost(host, 'app'), cookie: appCookie, origin: `http://${appHost(host, 'app')}`, 'transfer-encoding': 'chunked' }
      })
      const res = new Promise((resolve, reject) => { request.on('response', resolve); request.on('error', reject) })
      request.write('hello')
      // The client sends nothing more until the app says it has the first piece.
      const response = await withTimeout(res, 10000, 'the app\'s answer to the first piece (a buffering proxy waits for the whole body)')
      assert.equal(response.statusCode, 200)
      const chunks = []
      const ended = new Promise((resolve, reject) => { response.on('end', resolve); response.on('error', reject) })
      const first = await withTimeout(new Promise((resolve) => response.once('data', (c) => { chunks.push(c); resolve(c.toString()) })), 10000, 'got 5')
      assert.equal(first, 'got 5\n')
      response.on('data', (c) => chunks.push(c))
      request.end(' world')
      await withTimeout(ended, 10000, 'the end of the answer')
      assert.equal(Buffer.concat(chunks).toString(), 'got 5\ntotal 11\n')
    })

    test('unauthenticated: GET/HEAD redirect to bind-session, other methods get 401', async () => {
      const head = await req(host, { method: 'HEAD', hostHeader: appHost(host, 'app'), path: '/h' })
      assert.equal(head.status, 302)
      assert.ok(head.headers.location.startsWith(bindPrefix('app', '/h')), head.headers.location)
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
        const r = await req(host, { method, hostHeader: appHost(host, 'app'), path: '/h', body: '{}', headers: { 'content-type': 'application/json' } })
        assert.equal(r.status, 401, `${method}: ${r.status}`)
      }
    })

    test('unknown app -> 404 page "No app is installed at nope.localhost"', async () => {
      const r = await req(host, { hostHeader: appHost(host, 'nope'), path: '/', bearer: host.token })
      assert.equal(r.status, 404)
      assert.match(r.headers['content-type'] ?? '', /text\/html/)
      assert.match(r.text, /No app is installed at nope\.localhost/)
    })

    test('a stopped app -> 502 page naming it; back to 200 after start', async () => {
      const { cookie } = await bindApp(host, aliceCookie, 'stopper')
      assert.equal((await req(host, { hostHeader: appHost(host, 'stopper'), path: '/', cookie })).status, 200)
      await servicesClient(host).stop('stopper')
      await waitForService(host, 'stopper', (i) => i.status === 'stopped')
      for (const auth of [{ cookie }, { bearer: host.token }]) {
        const r = await req(host, { hostHeader: appHost(host, 'stopper'), path: '/', ...auth })
        assert.equal(r.status, 502, `${Object.keys(auth)[0]}: ${r.status} ${r.text.slice(0, 200)}`)
        assert.match(r.headers['content-type'] ?? '', /text\/html/)
        assert.match(r.text, /stopper/)
        assert.match(r.text, /stopped/i)
      }
      await servicesClient(host).start('stopper')
      await waitForService(host, 'stopper', (i) => i.status === 'active')
      const again = await req(host, { hostHeader: appHost(host, 'stopper'), path: '/', cookie })
      assert.equal(again.status, 200)
      host.trackPid((await getService(host, 'stopper')).pid)
    })

    test('WebSocket echo through the subdomain with the app cookie', async () => {
      const { sock, messages } = await openAppWs('app', {
        cookie: `x=1; ${appCookie}`,
        headers: { 'atek-auth-user': 'mallory', 'atek-auth-service': 'mallory' },
        path: '/ws?q=1'
      })
      try {
        const hello = JSON.parse((await nextMessage(messages, 1, 'hello')).data.toString()).hello
        assert.equal(hello.url, '/ws?q=1')
        assert.equal(hello.serviceKey, apps.app.key)
        assert.equal(hello.headers['atek-auth-user'], alice.key)
        assert.equal(hello.headers['atek-auth-service'], apps.app.key)
        assert.ok(!hasHostCookie(hello.headers.cookie), `the app saw the host's cookie on upgrade: ${hello.headers.cookie}`)
        assert.match(hello.headers.cookie ?? '', /x=1/)
        sock.send('ping text')
        const m2 = await nextMessage(messages, 2, 'text echo')
        assert.equal(m2.isBinary, false)
        assert.equal(m2.data.toString(), 'ping text')
        const big = crypto.randomBytes(1 << 20)
        sock.send(big)
        const m3 = await nextMessage(messages, 3, 'binary echo')
        assert.equal(m3.isBinary, true)
        assert.ok(m3.data.equals(big), '1 MiB binary message changed on the way')
      } finally {
        sock.terminate()
      }
    })

    test('(beyond the letter) a cookie WebSocket upgrade from a foreign Origin is refused; the app\'s own origin passes', async () => {
      // A WebSocket handshake is a GET, but browsers send it cross-site with the SameSite=None
      // cookie and CORS does not apply: without an Origin check any page could open an
      // authenticated socket to the user's app (cross-site WebSocket hijacking).
      for (const origin of ['http://evil.example', appOrigin(host, 'app2')]) {
        const err = await openAppWs('app', { cookie: appCookie, headers: { origin } }).then(({ sock }) => { sock.terminate(); return null }, (e) => e)
        assert.ok(err, `a cookie-authenticated upgrade from ${origin} was accepted`)
        assert.equal(err.status, 403, `${origin}: ${err.message}`)
      }
      const { sock, messages } = await openAppWs('app', { cookie: appCookie, headers: { origin: appOrigin(host, 'app') } })
      try {
        await nextMessage(messages, 1, 'hello')
      } finally {
        sock.terminate()
      }
    })

    test('WebSocket upgrades without a valid app cookie -> 401', async () => {
      for (const [label, cookie] of [['no cookie', undefined], ['main-domain cookie', `session=${aliceCookie}`], ['main token as the app cookie', `${APP_COOKIE}=${aliceCookie}`], ['garbage', `${APP_COOKIE}=garbage`]]) {
        const err = await openAppWs('app', { cookie }).then(({ sock }) => { sock.terminate(); return null }, (e) => e)
        assert.ok(err, `${label}: upgrade accepted`)
        assert.equal(err.status, 401, `${label}: ${err.message}`)
      }
    })
  })

  describe('CSRF', () => {
    let appCookie

    before(async () => {
      appCookie = (await bindApp(host, aliceCookie, 'app')).cookie
    })

    const getSettings = (headers, opts = {}) => gateway(host, USERS_API, 'getSettings', [alice.key], { cookie: aliceCookie, headers, ...opts })

    test('gateway: a cookie-authenticated POST from a foreign Origin -> 403', async () => {
      const r = await getSettings({ origin: 'http://evil.example' })
      assert.equal(r.status, 403, r.text)
      assert.equal(r.json?.result, undefined)
      const l = await gateway(host, SESSIONS_API, 'logout', [], { cookie: aliceCookie, headers: { origin: 'http://evil.example' } })
      assert.equal(l.status, 403, 'a cross-site logout')
      assert.deepEqual(await whoami(host, { cookie: aliceCookie }), { isActive: true, username: 'alice' })
    })

    test('gateway: the host\'s own origin, Sec-Fetch-Site same-origin/none, or no header at all -> accepted', async () => {
      for (const headers of [{ origin: mainOrigin(host) }, { 'sec-fetch-site': 'same-origin' }, { 'sec-fetch-site': 'none' }, {}]) {
        const r = await getSettings(headers)
        assert.equal(r.status, 200, `${JSON.stringify(headers)}: ${r.status} ${r.text}`)
        assert.ok('result' in r.json, r.text)
      }
    })

    test('gateway: Sec-Fetch-Site cross-site/same-site without an allowed Origin -> 403', async () => {
      for (const headers of [{ 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }, { origin: 'null' }, { origin: `http://localhost:${host.port + 1}` }]) {
        const r = await getSettings(headers)
        assert.equal(r.status, 403, `${JSON.stringify(headers)}: ${r.status} ${r.text}`)
      }
    })

    test('gateway: a bearer caller is not subject to the Origin check', async () => {
      const r = await gateway(host, USERS_API, 'list', [], { bearer: host.token, headers: { origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' } })
      assert.equal(r.status, 200, r.text)
      assert.ok(r.json.result?.users)
    })

    test('gateway: an app\'s origin may call the API that app provides, not host APIs', async () => {
      const own = await gateway(host, 'test.example/sub-echo', 'whoami', [], { cookie: aliceCookie, headers: { origin: appOrigin(host, 'app') } })
      assert.equal(own.status, 200, own.text)
      assert.equal(own.json?.result?.user, alice.key)
      const host_ = await getSettings({ origin: appOrigin(host, 'app') })
      assert.equal(host_.status, 403, `app origin calling users-api: ${host_.status} ${host_.text}`)
    })

    test('gateway CORS: preflight and responses allow only the allowed origins, with credentials', async () => {
      const preflight = (origin, api) => req(host, {
        method: 'OPTIONS',
        path: '/_atek/gateway?api=' + encodeURIComponent(api),
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }
      })
      const ok = await preflight(appOrigin(host, 'app'), 'test.example/sub-echo')
      assert.ok(ok.status >= 200 && ok.status < 300, `preflight: ${ok.status}`)
      assert.equal(ok.headers['access-control-allow-origin'], appOrigin(host, 'app'))
      assert.equal(ok.headers['access-control-allow-credentials'], 'true')
      const evil = await preflight('http://evil.example', 'test.example/sub-echo')
      assert.notEqual(evil.headers['access-control-allow-origin'], 'http://evil.example')
      assert.notEqual(evil.headers['access-control-allow-origin'], '*')
      const foreignApi = await preflight(appOrigin(host, 'app'), USERS_API)
      assert.notEqual(foreignApi.headers['access-control-allow-origin'], appOrigin(host, 'app'))
      const post = await gateway(host, 'test.example/sub-echo', 'key', [], { cookie: aliceCookie, headers: { origin: appOrigin(host, 'app') } })
      assert.equal(post.headers['access-control-allow-origin'], appOrigin(host, 'app'))
      assert.equal(post.headers['access-control-allow-credentials'], 'true')
    })

    test('gateway proxy transport: a cookie WebSocket from a foreign Origin is refused, the host\'s own origin passes', async () => {
      const open = (origin) => withTimeout(new Promise((resolve) => {
        const sock = new WebSocket(`ws://127.0.0.1:${host.port}/_atek/gateway?api=${encodeURIComponent('test.example/ws-echo')}`, {
          headers: { host: mainHost(host), cookie: `session=${aliceCookie}`, origin }, handshakeTimeout: 5000
        })
        sock.on('error', () => {})
        sock.once('open', () => { sock.terminate(); resolve(101) })
        sock.once('unexpected-response', (_q, res) => { resolve(res.statusCode) })
      }), 8000, 'gateway WebSocket')
      assert.equal(await open('http://evil.example'), 403)
      assert.equal(await open(mainOrigin(host)), 101)
    })

    test('subdomain proxy: cookie POST from a foreign origin or another app -> 403; own origin passes', async () => {
      const post = (headers) => req(host, {
        method: 'POST', hostHeader: appHost(host, 'app'), path: '/form', cookie: appCookie, body: 'a=1',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }
      })
      for (const headers of [{ origin: 'http://evil.example' }, { origin: appOrigin(host, 'app2') }, { 'sec-fetch-site': 'cross-site' }]) {
        const r = await post(headers)
        assert.equal(r.status, 403, `${JSON.stringify(headers)}: ${r.status}`)
        assert.equal(r.json?.serviceKey, undefined, 'the request reached the app')
      }
      for (const headers of [{ origin: appOrigin(host, 'app') }, { origin: mainOrigin(host) }, { 'sec-fetch-site': 'same-origin' }, {}]) {
        const r = await post(headers)
        assert.equal(r.status, 200, `${JSON.stringify(headers)}: ${r.status} ${r.text.slice(0, 200)}`)
        assert.equal(r.json.body, 'a=1')
      }
      // GET is never refused for its Origin
      const g = await req(host, { hostHeader: appHost(host, 'app'), path: '/g', cookie: appCookie, headers: { origin: 'http://evil.example' } })
      assert.equal(g.status, 200)
    })
  })
})
