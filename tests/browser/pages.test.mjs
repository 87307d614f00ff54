// The host's own pages (crates/atek-host/src/web/*.html) in Chromium, against a small stand-in
// server that answers the calls the pages make. What the pages do on their own is checked
// here: which redirects the login page follows, client-side checks, what they send, how they
// show errors and progress. login.test.mjs checks the same pages served by the real host.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { before, after } from 'node:test'

import { browserTest, launchChromium, newContext, screenshot, waitForText, BROWSER_DIR } from './lib/harness.mjs'

const WEB_DIR = path.resolve(BROWSER_DIR, '..', '..', 'crates', 'atek-host', 'src', 'web')
// As the host serves them: the shared styles (base.css) inlined where a page asks for them.
const page = (name) => fs.readFileSync(path.join(WEB_DIR, name), 'utf8')
  .replace('/*ATEK_BASE_CSS*/', fs.readFileSync(path.join(WEB_DIR, 'base.css'), 'utf8'))

let browser
let server
let port
let base
const contexts = []
const btest = browserTest(() => ({ contexts }))

// What the stand-in server answers, set per test.
const stub = {
  calls: [], // {method, url, host, body}
  welcomeData: null, // JSON for the welcome page's atek-data
  gateway: null, // (rpcRequest, apiId) => {status?, body, delay?}
  setup: null // (body) => {status, body}
}

function send (res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}

before(async () => {
  server = http.createServer((req, res) => {
    let raw = ''
    req.on('data', (d) => { raw += d })
    req.on('end', () => {
      const url = new URL(req.url, 'http://stand-in')
      let body
      try { body = JSON.parse(raw) } catch {}
      stub.calls.push({ method: req.method, url: req.url, host: req.headers.host, body })
      if (req.method === 'GET' && url.pathname === '/_atek/login') return send(res, 200, 'text/html; charset=utf-8', page('login.html'))
      if (req.method === 'GET' && url.pathname === '/_atek/setup') return send(res, 200, 'text/html; charset=utf-8', page('setup.html'))
      if (req.method === 'GET' && url.pathname === '/welcome') {
        const json = JSON.stringify(stub.welcomeData).replace(/</g, '\\u003c')
        return send(res, 200, 'text/html; charset=utf-8',
          page('welcome.html').replace('<!--ATEK_DATA-->', `<script id="atek-data" type="application/json">${json}</script>`))
      }
      if (req.method === 'POST' && url.pathname === '/_atek/setup') {
        const r = stub.setup(body)
        return send(res, r.status, 'application/json', JSON.stringify(r.body))
      }
      if (req.method === 'POST' && url.pathname === '/_atek/gateway') {
        const r = stub.gateway(body, url.searchParams.get('api'))
        const answer = () => send(res, r.status ?? 200, r.type ?? 'application/json', typeof r.body === 'string' ? r.body : JSON.stringify(r.body))
        return r.delay ? setTimeout(answer, r.delay) : answer()
      }
      if (req.method === 'GET') {
        return send(res, 200, 'text/html; charset=utf-8', `<h1 id="landed">${req.headers.host} ${req.url.replace(/[<&]/g, '')}</h1>`)
      }
      send(res, 404, 'text/plain', 'not found')
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = server.address().port
  base = `http://localhost:${port}`
  browser = await launchChromium()
})

after(async () => {
  for (const ctx of contexts) await ctx.close().catch(() => {})
  if (browser) await browser.close().catch(() => {})
  if (server) {
    server.closeAllConnections?.()
    await new Promise((resolve) => server.close(resolve))
  }
})

async function freshPage (opts) {
  const ctx = await newContext(browser, opts)
  contexts.push(ctx)
  return ctx.newPage()
}

const rpcResult = (req, result) => ({ body: { jsonrpc: '2.0', id: req.id, result } })
const rpcError = (req, code, message) => ({ body: { jsonrpc: '2.0', id: req.id, error: { code, message } } })

btest('login: posts JSON-RPC login to the sessions API and goes only to safe redirects', async () => {
  stub.gateway = (req, api) => {
    assert.equal(api, 'atek.cloud/user-sessions-api')
    return rpcResult(req, { isActive: true, username: req.params[0].username })
  }
  const p = await freshPage()
  const cases = [
    [null, `${base}/`],
    ['/x/y?z=1#h', `${base}/x/y?z=1#h`],
    ['/_atek/bind-session?service=a.b&path=%2Fq', `${base}/_atek/bind-session?service=a.b&path=%2Fq`],
    [`http://localhost:${port}/abs`, `http://localhost:${port}/abs`],
    [`http://app.localhost:${port}/p?q=1`, `http://app.localhost:${port}/p?q=1`],
    [`http://core.adb.localhost:${port}/`, `http://core.adb.localhost:${port}/`],
    ['//example.com/', `${base}/`],
    ['/\\example.com/', `${base}/`],
    ['/\t/example.com/', `${base}/`],
    ['https://example.com/', `${base}/`],
    [`http://localhost.example.com:${port}/`, `${base}/`],
    [`http://evillocalhost:${port}/`, `${base}/`],
    [`http://user:pw@localhost:${port}/`, `${base}/`],
    ['javascript:alert(1)', `${base}/`],
    ['data:text/html,hi', `${base}/`],
    ['relative/path', `${base}/`],
    [' //example.com', `${base}/`]
  ]
  for (const [redirect, want] of cases) {
    stub.calls = []
    const q = redirect === null ? '' : `?redirect=${encodeURIComponent(redirect)}`
    await p.goto(`${base}/_atek/login${q}`)
    await p.getByLabel('Username').fill('  alice ')
    await p.getByLabel('Password').fill('pw with spaces ')
    await p.getByRole('button', { name: 'Log in' }).click()
    await p.waitForURL(want, { timeout: 5000 }).catch((err) => {
      throw new Error(`redirect=${JSON.stringify(redirect)}: expected ${want}, at ${p.url()}\n${err.message}`)
    })
    const post = stub.calls.find((c) => c.method === 'POST')
    assert.equal(post.url, '/_atek/gateway?api=atek.cloud/user-sessions-api')
    assert.deepEqual(post.body, { jsonrpc: '2.0', id: 1, method: 'login', params: [{ username: 'alice', password: 'pw with spaces ' }] })
  }
})

btest('login: shows JSON-RPC errors in an alert, disables the button while a request runs', async () => {
  const p = await freshPage()
  await p.goto(`${base}/_atek/login`)
  stub.gateway = (req) => ({ ...rpcError(req, -32003, 'Too many login attempts; try again in 4 seconds'), delay: 700 })
  await p.getByRole('button', { name: 'Log in' }).click()
  await waitForText(p.getByRole('alert'), 'Please enter your username.')
  assert.equal(await p.evaluate(() => document.activeElement.id), 'username')
  await p.getByLabel('Username').fill('alice')
  await p.getByLabel('Password').fill('wrong')
  await p.getByRole('button', { name: 'Log in' }).click()
  assert.equal(await p.locator('#submit').isDisabled(), true, 'disabled while the request runs')
  await waitForText(p.getByRole('alert'), 'Too many login attempts; try again in 4 seconds')
  assert.equal(await p.locator('#submit').isEnabled(), true)
  assert.equal(await p.evaluate(() => document.activeElement.id), 'password', 'focus goes back to the password')
  assert.equal(new URL(p.url()).pathname, '/_atek/login')

  stub.gateway = () => ({ status: 502, type: 'text/html', body: '<h1>bad gateway</h1>' })
  await p.getByRole('button', { name: 'Log in' }).click()
  await waitForText(p.getByRole('alert'), 'The server answered 502 Bad Gateway. Please try again.')
  stub.gateway = () => ({ status: 403, body: { error: true, message: 'Cross-site request refused' } })
  await p.getByRole('button', { name: 'Log in' }).click()
  await waitForText(p.getByRole('alert'), 'Cross-site request refused')
})

btest('setup: checks the passwords, posts {token, username, password}, shows the host\'s message', async () => {
  const p = await freshPage()
  await p.goto(`${base}/_atek/setup`)
  await waitForText(p.getByRole('alert'), 'This setup link has no token. Open the link the Atek host printed when it started (or create an admin with: atek mkuser --admin).')
  assert.equal(await p.getByRole('button', { name: 'Create account' }).isDisabled(), true)

  stub.calls = []
  await p.goto(`${base}/_atek/setup?token=T0k%2Ben`)
  await p.getByLabel('Username').fill('admin')
  await p.getByLabel('Password', { exact: true }).fill('short')
  await p.getByLabel('Password again').fill('short')
  await p.getByRole('button', { name: 'Create account' }).click()
  await waitForText(p.getByRole('alert'), 'The password must be at least 8 characters long.')
  await p.getByLabel('Password', { exact: true }).fill('long enough')
  await p.getByRole('button', { name: 'Create account' }).click()
  await waitForText(p.getByRole('alert'), 'The two passwords do not match.')
  assert.equal(stub.calls.filter((c) => c.method === 'POST').length, 0, 'nothing sent yet')

  stub.setup = () => ({ status: 403, body: { error: true, message: 'This setup link is no longer valid' } })
  await p.getByLabel('Password again').fill('long enough')
  await p.getByRole('button', { name: 'Create account' }).click()
  await waitForText(p.getByRole('alert'), 'This setup link is no longer valid')
  const post = stub.calls.find((c) => c.method === 'POST')
  assert.equal(post.url, '/_atek/setup')
  assert.deepEqual(post.body, { token: 'T0k+en', username: 'admin', password: 'long enough' })

  stub.setup = (b) => ({ status: 200, body: { username: b.username } })
  await p.getByRole('button', { name: 'Create account' }).click()
  await p.waitForURL(`${base}/`)
})

btest('welcome: shows the user, installs the app, sets it as main service, reloads; logs out', async () => {
  stub.welcomeData = { username: 'c<b>arol</b>', userKey: '0123456789abcdef', defaultMainService: 'https://example.com/home-app', ownedByOther: true, mayInstall: true }
  stub.gateway = (req) => req.method === 'list' ? rpcResult(req, { services: [] }) : rpcError(req, -32601, 'Method not found')
  const p = await freshPage()
  await p.goto(`${base}/welcome`)
  await p.getByRole('heading', { name: 'Welcome, c<b>arol</b>' }).waitFor()
  assert.equal(await p.getByText('Your home application is currently set to an app you didn\'t install!').isVisible(), true)
  assert.equal(await p.getByLabel('Source URL').inputValue(), 'https://example.com/home-app')

  // An install that fails: the error is shown, the form usable again.
  stub.gateway = (req) => ({ ...rpcError(req, -32000, 'git clone failed: not found'), delay: 500 })
  await p.getByRole('button', { name: 'Install' }).click()
  await waitForText(p.getByRole('status'), 'Installing… this can take a minute')
  assert.equal(await p.locator('#install').isDisabled(), true)
  await screenshot(p, 'pages-welcome-installing')
  await waitForText(p.getByRole('alert'), 'git clone failed: not found')
  assert.equal(await p.locator('#install').isEnabled(), true)

  // A good one: install -> updateSettings(userKey, {mainServiceId}) -> reload.
  stub.calls = []
  stub.gateway = (req, api) => {
    if (req.method === 'install') return { ...rpcResult(req, { key: 'a86927a75fcdb1a2', status: 'active', settings: { id: 'home-app-2', owningUserKey: '0123456789abcdef', sourceUrl: 'https://example.com/home-app' } }), delay: 300 }
    if (req.method === 'updateSettings') return rpcResult(req, req.params[1])
    return rpcError(req, -32601, 'Method not found')
  }
  await p.getByLabel('Version').fill('^1')
  await p.getByRole('button', { name: 'Install' }).click()
  await p.waitForEvent('load')
  // (The reloaded page lists the user's apps again: not part of the install.)
  const posts = stub.calls.filter((c) => c.method === 'POST' && c.body?.method !== 'list')
  assert.deepEqual(posts.map((c) => [c.url, c.body.method, c.body.params]), [
    ['/_atek/gateway?api=atek.cloud/services-api', 'install', [{ sourceUrl: 'https://example.com/home-app', desiredVersion: '^1' }]],
    ['/_atek/gateway?api=atek.cloud/users-api', 'updateSettings', ['0123456789abcdef', { mainServiceId: 'home-app-2' }]]
  ])
  assert.ok(stub.calls.some((c) => c.method === 'GET' && c.url === '/welcome' && stub.calls.indexOf(c) > stub.calls.indexOf(posts[1])), 'reloaded')

  stub.gateway = (req, api) => (api === 'atek.cloud/user-sessions-api' && req.method === 'logout') ? rpcResult(req, null) : rpcError(req, -32601, 'no')
  await p.getByRole('button', { name: 'Log out' }).click()
  await p.waitForURL(`${base}/_atek/login`)
})

btest('welcome: works without a default service and says when it lacks the user key', async () => {
  stub.welcomeData = { username: 'dave', defaultMainService: '', ownedByOther: false }
  stub.gateway = (req) => rpcError(req, -32601, 'Method not found')
  const p = await freshPage({ viewport: { width: 390, height: 800 }, isMobile: true, hasTouch: true })
  await p.goto(`${base}/welcome`)
  await p.getByRole('heading', { name: 'Welcome, dave' }).waitFor()
  assert.equal(await p.getByText('an app you didn\'t install').isVisible(), false)
  assert.equal(await p.getByLabel('Source URL').inputValue(), '')
  await p.getByRole('button', { name: 'Install' }).click()
  await waitForText(p.getByRole('alert'), 'Please enter the source URL of the app to install.')
  await p.getByLabel('Source URL').fill('file:///srv/app')
  stub.calls = []
  await p.getByRole('button', { name: 'Install' }).click()
  await waitForText(p.getByRole('alert'), 'This page does not know who you are. Reload it and try again.')
  assert.equal(stub.calls.length, 0)
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
  assert.ok(overflow <= 0, `fits a 390 px wide screen (overflow ${overflow} px)`)
  await screenshot(p, 'pages-welcome-mobile', { fullPage: true })
})

btest('welcome: a user who may not install gets no form, and picks one of their own apps', async () => {
  const me = '0123456789abcdef'
  stub.welcomeData = { username: 'erin', userKey: me, defaultMainService: 'https://example.com/home-app', ownedByOther: false, mayInstall: false }
  stub.calls = []
  stub.gateway = (req, api) => {
    if (api === 'atek.cloud/services-api' && req.method === 'list') {
      return rpcResult(req, {
        services: [
          { key: 'k1', status: 'active', settings: { id: 'notes', owningUserKey: me } },
          { key: 'k2', status: 'active', settings: { id: 'someone-elses', owningUserKey: 'fedcba9876543210' } },
          { key: 'k3', status: 'stopped', settings: { id: 'photos', owningUserKey: me } }
        ]
      })
    }
    if (api === 'atek.cloud/users-api' && req.method === 'updateSettings') return rpcResult(req, req.params[1])
    return rpcError(req, -32601, 'Method not found')
  }
  const p = await freshPage()
  await p.goto(`${base}/welcome`)
  await p.getByRole('heading', { name: 'Welcome, erin' }).waitFor()
  await p.getByText('Only an admin can install apps on this host').waitFor()
  assert.equal(await p.locator('#install-form').isVisible(), false, 'no install form')
  assert.equal(await p.getByRole('button', { name: 'Install' }).count(), 0)
  await p.getByRole('heading', { name: 'Your apps' }).waitFor()
  assert.deepEqual(await p.locator('#app-list code').allTextContents(), ['notes', 'photos'], 'only her own apps')
  await screenshot(p, 'pages-welcome-no-install')
  assert.ok(!stub.calls.some((c) => c.body?.method === 'install'), 'nothing installed')

  stub.calls = []
  // updateSettings answers at once: wait for the reload from before the click.
  const reloaded = p.waitForEvent('load')
  await p.getByRole('button', { name: 'Use photos as your home application' }).click()
  await reloaded
  const update = stub.calls.find((c) => c.body?.method === 'updateSettings')
  assert.deepEqual(update?.body.params, [me, { mainServiceId: 'photos' }])
  assert.ok(stub.calls.some((c) => c.method === 'GET' && c.url === '/welcome'), 'reloaded')
})

btest('the pages load nothing from elsewhere', async () => {
  for (const name of ['login.html', 'setup.html', 'welcome.html']) {
    const html = page(name)
    assert.doesNotMatch(html, /<(script|link|img|iframe)[^>]+(src|href)=["']?(https?:)?\/\//i, `${name} has no external assets`)
    assert.doesNotMatch(html, /@import|url\(\s*["']?(https?:)?\/\//i, `${name} has no external CSS`)
  }
  assert.equal(page('welcome.html').split('<!--ATEK_DATA-->').length, 2, 'welcome.html has the data marker once')
})
