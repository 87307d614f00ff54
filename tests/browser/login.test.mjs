// Logging in with a real browser: the login page, the session cookie, the main service at `/`,
// the bind-session flow that logs a user into apps on `{id}.localhost` (also inside a
// cross-site iframe), the welcome page and the first-admin setup page.
//
// One host for the file (users alice and bob, apps hello-app and frame-app owned by alice,
// frame-app set as alice's main service), plus a second, user-less host for the setup page.
// Tests run in order and build on each other's state.

import assert from 'node:assert/strict'
import { before, after } from 'node:test'

import {
  browserTest, launchChromium, newContext, startHost, install, fixtureUrl, screenshot,
  waitForText, waitFor, requestedUrls, isLoopbackUrl
} from './lib/harness.mjs'

const ALICE = { username: 'alice', password: 'alice-correct-horse-1' }
const BOB = { username: 'bob', password: 'bob-battery-staple-2' }

let host
let setupHost
let browser
const contexts = []
const btest = browserTest(() => ({ hosts: [host, setupHost], contexts }))

// http://localhost:PORT, the main domain; apps are at http://{id}.localhost:PORT.
let base
const appUrl = (id, p = '/') => `http://${id}.localhost:${host.port}${p}`

async function context (opts) {
  const ctx = await newContext(browser, opts)
  contexts.push(ctx)
  return ctx
}

async function closeContext (ctx) {
  contexts.splice(contexts.indexOf(ctx), 1)
  await ctx.close()
}

/** Fills and submits the login form on `page` (which must show it). */
async function submitLogin (page, { username, password }) {
  await page.getByLabel('Username').fill(username)
  await page.getByLabel('Password').fill(password)
  await page.getByRole('button', { name: 'Log in' }).click()
}

before(async () => {
  browser = await launchChromium()
  // usersMayInstall: bob, a plain user, installs his home app from the welcome page.
  host = await startHost({ config: { domain: 'localhost', defaultMainService: '', usersMayInstall: true } })
  base = `http://localhost:${host.port}`
})

// Users and apps, made once through the host's APIs with the system token; every test that
// needs them awaits this (a failure here fails those tests with its message).
let scenarioPromise
function scenario () {
  scenarioPromise ??= (async () => {
    const users = host.client('atek.cloud/users-api')
    ALICE.key = (await users.create({ username: ALICE.username, password: ALICE.password })).key
    BOB.key = (await users.create({ username: BOB.username, password: BOB.password })).key
    assert.match(ALICE.key, /^[0-9a-f]{16}$/, 'users-api.create returns the user key')
    for (const name of ['hello-app', 'frame-app']) {
      const info = await install(host, { sourceUrl: fixtureUrl(name), user: ALICE.username })
      assert.equal(info.settings.id, name)
      assert.equal(info.settings.owningUserKey, ALICE.key, `${name} is owned by alice`)
    }
    await users.updateSettings(ALICE.key, { mainServiceId: 'frame-app' })
  })()
  return scenarioPromise
}

after(async () => {
  for (const ctx of contexts) await ctx.close().catch(() => {})
  if (browser) await browser.close().catch(() => {})
  if (host) await host.cleanup()
  if (setupHost) await setupHost.cleanup()
})

btest('Chromium reaches the host on localhost and on *.localhost', async () => {
  const ctx = await context()
  const page = await ctx.newPage()
  for (const url of [`${base}/_atek/login`, appUrl('no-such-app')]) {
    const res = await page.goto(url)
    assert.ok(res, `a response for ${url}`)
    assert.equal(new URL(res.url()).port, String(host.port), `${url} answered by the host`)
  }
  await closeContext(ctx)
})

btest('an anonymous visit to / lands on the login page', async () => {
  await scenario()
  const ctx = await context()
  const page = await ctx.newPage()
  await page.goto(`${base}/`)
  await page.waitForURL((u) => u.pathname === '/_atek/login' || u.pathname === '/_atek/login/')
  const url = new URL(page.url())
  assert.equal(url.host, `localhost:${host.port}`, 'the redirect keeps the port')
  assert.equal(url.searchParams.get('redirect'), '/')
  await page.getByRole('heading', { name: 'Log in' }).waitFor()
  await page.getByLabel('Username').waitFor()
  await page.getByLabel('Password').waitFor()
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'username', 'the username field has the focus')
  await screenshot(page, 'login-page')

  const mobile = await context({ viewport: { width: 390, height: 760 }, isMobile: true, hasTouch: true, colorScheme: 'dark' })
  const small = await mobile.newPage()
  await small.goto(`${base}/_atek/login`)
  await small.getByRole('button', { name: 'Log in' }).waitFor()
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
  assert.ok(overflow <= 0, `the login page fits a 390 px wide screen (overflow ${overflow} px)`)
  await screenshot(small, 'login-page-mobile')
  await closeContext(mobile)
  await closeContext(ctx)
})

// The context that alice logs into; the next tests reuse it.
let aliceCtx

btest('logging in shows the main service, and its cross-site iframe of hello-app is logged in too', async () => {
  await scenario()
  aliceCtx = await context()
  const page = await aliceCtx.newPage()
  await page.goto(`${base}/`)
  await page.waitForURL((u) => u.pathname.startsWith('/_atek/login'))
  await submitLogin(page, ALICE)
  await page.waitForURL(`${base}/`)

  // The main service (frame-app) is proxied at / with alice's identity...
  await waitForText(page.locator('#title'), 'frame-app', { message: 'frame-app at / after logging in' })
  await waitForText(page.locator('#user'), `user ${ALICE.key}`)

  // ...and the iframe of http://hello-app.localhost:PORT/ went through bind-session and shows
  // alice's key: the session cookie works in a cross-site frame.
  const frame = page.frameLocator('#f')
  try {
    await waitForText(frame.locator('#who'), `hello ${ALICE.key}`, {
      timeout: 30000,
      message: 'hello-app inside the iframe to greet alice',
      failIf: () => aliceCtx.atekEvents.some((e) => e.includes('ERR_TOO_MANY_REDIRECTS')) && 'net::ERR_TOO_MANY_REDIRECTS in the iframe'
    })
  } catch (err) {
    if (aliceCtx.atekEvents.some((e) => e.includes('ERR_TOO_MANY_REDIRECTS'))) {
      const cookies = await aliceCtx.cookies()
      err.message = 'the iframe of hello-app looped between bind-session and the app until ' +
        'ERR_TOO_MANY_REDIRECTS: the session cookie set on hello-app.localhost inside the cross-site ' +
        'iframe (top level: localhost) was not stored, as Chromium blocks third-party cookies; ' +
        `cookies the browser kept: ${JSON.stringify(cookies.map((c) => [c.domain, c.sameSite, c.secure, c.partitionKey ?? null]))}\n` + err.message
    }
    throw err
  } finally {
    await screenshot(page, 'framed-app').catch(() => {})
  }
  const helloFrame = page.frames().find((f) => f.url().startsWith(appUrl('hello-app')))
  assert.ok(helloFrame, `a frame on ${appUrl('hello-app')}; frames: ${page.frames().map((f) => f.url()).join(', ')}`)
  assert.equal(new URL(helloFrame.url()).searchParams.has('bst'), false, 'the bind-session token is removed from the URL')

  const cookies = await aliceCtx.cookies()
  const main = cookies.find((c) => c.name === 'session' && c.domain === 'localhost')
  assert.ok(main, `a session cookie for localhost; cookies: ${JSON.stringify(cookies)}`)
  assert.equal(main.httpOnly, true)
  assert.equal(main.secure, true)
  assert.equal(main.sameSite, 'None')
  // The app's own cookie has a name of its own (an app may have a `session` cookie), and is
  // partitioned: it was set inside the main page's frame.
  assert.ok(cookies.some((c) => c.name === 'atek-session' && c.domain === 'hello-app.localhost' && c.partitionKey),
    `a partitioned atek-session cookie for hello-app.localhost; cookies: ${JSON.stringify(cookies)}`)
})

btest('a top-level visit to the app\'s subdomain is logged in', async () => {
  await scenario()
  assert.ok(aliceCtx, 'needs the logged-in context of the previous test')
  const page = await aliceCtx.newPage()
  await page.goto(appUrl('hello-app'))
  await waitForText(page.locator('#who'), `hello ${ALICE.key}`)
  assert.equal(page.url(), appUrl('hello-app'), 'ends on the app\'s own URL, without bst')
  await screenshot(page, 'hello-app')
  await page.close()
})

btest('an anonymous visit to an app\'s subdomain logs in and comes back to the same path', async () => {
  await scenario()
  const ctx = await context()
  const page = await ctx.newPage()
  await page.goto(appUrl('hello-app', '/some/path?x=1'))
  // -> bind-session on the main domain -> the login page, which must send us back there.
  await page.waitForURL((u) => u.host === `localhost:${host.port}` && u.pathname.startsWith('/_atek/login'))
  const redirect = new URL(page.url()).searchParams.get('redirect')
  assert.match(redirect ?? '', /\/_atek\/bind-session\?/, 'the login page is told to go back to bind-session')
  await submitLogin(page, ALICE)
  await page.waitForURL(appUrl('hello-app', '/some/path?x=1'))
  await waitForText(page.locator('#who'), `hello ${ALICE.key}`)
  await waitForText(page.locator('#url'), '/some/path?x=1')
  await closeContext(ctx)
})

btest('an unknown app\'s subdomain shows the "No such app" page', async () => {
  const ctx = await context()
  const page = await ctx.newPage()
  const res = await page.goto(appUrl('no-such-app', '/x'))
  assert.equal(res.status(), 404)
  await page.getByText('No app is installed at no-such-app.localhost').waitFor()
  await screenshot(page, 'no-such-app')
  await closeContext(ctx)
})

btest('a stopped app shows a 502 page naming it, and works again once started', async () => {
  await scenario()
  assert.ok(aliceCtx, 'needs the logged-in context')
  const services = host.client('atek.cloud/services-api')
  await services.stop('hello-app')
  try {
    const page = await aliceCtx.newPage()
    const res = await page.goto(appUrl('hello-app'))
    assert.equal(res.status(), 502)
    await page.getByText('hello-app is stopped').waitFor()
    await screenshot(page, 'app-stopped')
    await page.close()
  } finally {
    await services.start('hello-app')
    host.trackPid((await services.get('hello-app')).pid)
  }
  const page = await aliceCtx.newPage()
  await page.goto(appUrl('hello-app'))
  await waitForText(page.locator('#who'), `hello ${ALICE.key}`)
  await page.close()
})

btest('a user without a main service sees the welcome page, and can log out', async () => {
  await scenario()
  const ctx = await context()
  const page = await ctx.newPage()
  await page.goto(`${base}/`)
  await page.waitForURL((u) => u.pathname.startsWith('/_atek/login'))
  await submitLogin(page, BOB)
  await page.waitForURL(`${base}/`)
  await page.getByRole('heading', { name: `Welcome, ${BOB.username}` }).waitFor()
  assert.equal(await page.getByLabel('Source URL').inputValue(), '', 'pre-filled with defaultMainService ("")')
  assert.equal(await page.getByText('an app you didn\'t install').isVisible(), false)
  await screenshot(page, 'welcome')

  await page.getByRole('button', { name: 'Log out' }).click()
  await page.waitForURL((u) => u.pathname.startsWith('/_atek/login'))
  await page.goto(`${base}/`)
  await page.waitForURL((u) => u.pathname.startsWith('/_atek/login'), { message: 'logged out: / sends to the login page again' })
  await closeContext(ctx)
})

btest('the welcome page installs the home app and shows it', async () => {
  await scenario()
  const ctx = await context()
  const page = await ctx.newPage()
  await page.goto(`${base}/_atek/login`)
  await submitLogin(page, BOB)
  await page.waitForURL(`${base}/`)
  await page.getByRole('heading', { name: `Welcome, ${BOB.username}` }).waitFor()
  await page.getByLabel('Source URL').fill(fixtureUrl('hello-app'))
  await page.getByRole('button', { name: 'Install' }).click()
  // install -> updateSettings -> reload: bob's own copy of hello-app is his main service now.
  await waitForText(page.locator('#who'), `hello ${BOB.key}`, { timeout: 60000, message: 'hello-app as bob\'s main service' })
  const settings = await host.client('atek.cloud/users-api').getSettings(BOB.key)
  assert.match(settings.mainServiceId ?? '', /^hello-app(-\d+)?$/)
  const info = await host.client('atek.cloud/services-api').get(settings.mainServiceId)
  host.trackPid(info.pid)
  assert.equal(info.settings.owningUserKey, BOB.key, 'installed for bob')
  await closeContext(ctx)
})

btest('another user\'s app shows the "Not your app" page', async () => {
  await scenario()
  const ctx = await context()
  const page = await ctx.newPage()
  await page.goto(`${base}/_atek/login`)
  await submitLogin(page, BOB)
  await page.waitForURL(`${base}/`)
  const res = await page.goto(appUrl('hello-app'))
  assert.equal(res.status(), 403)
  await page.getByText('The app hello-app belongs to another user').waitFor()
  assert.equal(new URL(page.url()).host, `localhost:${host.port}`, 'stopped at bind-session on the main domain')
  await screenshot(page, 'not-your-app')
  await closeContext(ctx)
})

btest('logging out also ends the app sessions bound to it', async () => {
  await scenario()
  assert.ok(aliceCtx, 'needs the logged-in context')
  const page = await aliceCtx.newPage()
  await page.goto(`${base}/`)
  await waitForText(page.locator('#title'), 'frame-app')
  // frame-app has no logout button: call the sessions API from its (same-origin) page.
  const answer = await page.evaluate(async () => {
    const res = await fetch('/_atek/gateway?api=atek.cloud/user-sessions-api', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'logout', params: [] })
    })
    return { status: res.status, body: await res.json() }
  })
  assert.equal(answer.status, 200, JSON.stringify(answer))
  assert.equal(answer.body.error, undefined, JSON.stringify(answer))
  await page.goto(`${base}/`)
  await page.waitForURL((u) => u.pathname.startsWith('/_atek/login'))
  // The hello-app.localhost cookie is still in the browser, but its session died with the parent.
  await page.goto(appUrl('hello-app'))
  await page.waitForURL((u) => u.host === `localhost:${host.port}` && u.pathname.startsWith('/_atek/login'),
    { message: 'hello-app sends a logged-out user to the login page' })
  await page.close()
})

// Last on this host: failures may slow down later logins from this address (back-off).
btest('a wrong password shows the error on the page', async () => {
  await scenario()
  const ctx = await context()
  const page = await ctx.newPage()
  await page.goto(`${base}/_atek/login?redirect=%2F`)
  await submitLogin(page, { username: ALICE.username, password: 'not-the-password' })
  const alert = page.getByRole('alert')
  await waitForText(alert, 'Username or password was incorrect')
  assert.equal(new URL(page.url()).pathname, '/_atek/login', 'stays on the login page')
  assert.equal(await page.getByRole('button', { name: 'Log in' }).isEnabled(), true, 'the button is enabled again')
  await screenshot(page, 'login-wrong-password')
  await closeContext(ctx)
})

btest('the first admin is created on the setup page', async () => {
  setupHost = await startHost({ config: { domain: 'localhost', defaultMainService: '' } })
  const line = await waitFor(() => setupHost.hostOutput().match(/http:\/\/\S+\/_atek\/setup\?token=[^\s)]+/),
    { timeout: 10000, message: 'the "No users yet" line with the setup URL in host.out' })
  const setupUrl = new URL(line[0])
  assert.equal(setupUrl.host, `localhost:${setupHost.port}`)
  const ctx = await context()
  const page = await ctx.newPage()
  await page.goto(setupUrl.href)
  await page.getByLabel('Username').fill('admin')
  await page.getByLabel('Password', { exact: true }).fill('admin-password-3')
  await page.getByLabel('Password again').fill('admin-password-4')
  await page.getByRole('button', { name: 'Create account' }).click()
  await waitForText(page.getByRole('alert'), 'The two passwords do not match.')
  await screenshot(page, 'setup-mismatch')
  await page.getByLabel('Password again').fill('admin-password-3')
  await page.getByRole('button', { name: 'Create account' }).click()
  await page.waitForURL(`http://localhost:${setupHost.port}/`)
  await page.getByRole('heading', { name: 'Welcome, admin' }).waitFor()
  const users = await setupHost.client('atek.cloud/users-api').list()
  assert.deepEqual(users.users.map((u) => [u.username, u.role]), [['admin', 'admin']])
  await closeContext(ctx)
})

btest('the browser never left loopback', async () => {
  assert.ok(requestedUrls.length > 0, 'the browser made requests')
  const away = requestedUrls.filter((u) => !isLoopbackUrl(u))
  assert.deepEqual(away, [], 'requests to non-loopback addresses')
})
