// The login rate limit (spec: at most 10 attempts per second per client address, a growing
// back-off after consecutive failures per address and per account; refused attempts get
// -32003 "Too many login attempts; try again in N seconds"). Its own host: every test request
// comes from 127.0.0.1, so a throttled address would disturb any other test sharing the host.
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startHost, testWithHost, removeTempDirs, sleep } from './lib/host.mjs'
import { SESSIONS_API, USERS_API, createUser, gateway, login, whoami, randomPassword } from './lib/users.mjs'

let host
const test = testWithHost(() => host)
const TOO_MANY = /^Too many login attempts; try again in (\d+) seconds?$/

let victimPw, otherPw

describe('login rate limit', () => {
  before(async () => {
    host = await startHost()
    victimPw = randomPassword()
    otherPw = randomPassword()
    await createUser(host, { username: 'victim', password: victimPw })
    await createUser(host, { username: 'other', password: otherPw })
  }, { timeout: 60000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test('consecutive failures start a back-off; its announced delay is honest; a success ends it', { timeout: 120000 }, async () => {
    // sequential wrong attempts, under 10 a second, until the first refusal
    const seen = []
    let m
    for (let i = 0; i < 12 && !m; i++) {
      await sleep(150)
      const a = await login(host, 'other', `wrong-password-${i}`, { pace: false })
      assert.equal(a.res.status, 200, a.res.text)
      assert.equal(a.error?.code, -32003, a.res.text)
      seen.push(a.error.message)
      m = TOO_MANY.exec(a.error.message)
      if (!m) assert.equal(a.error.message, 'Username or password was incorrect')
    }
    assert.ok(m, `no back-off after ${seen.length} consecutive failures: ${JSON.stringify(seen)}`)
    assert.ok(seen.length >= 2, 'the very first failure should not be throttled')
    const wait = Number(m[1])
    assert.ok(wait >= 1 && wait <= 60, `back-off after ${seen.length - 1} failures: ${wait} s`)
    // the right password is refused as well until then
    const early = await login(host, 'other', otherPw, { pace: false })
    assert.equal(early.setCookie, undefined, 'a throttled login set a cookie')
    assert.match(early.error?.message ?? '', TOO_MANY, early.res.text)
    await sleep(Number(TOO_MANY.exec(early.error.message)[1]) * 1000 + 300)
    const ok = await login(host, 'other', otherPw, { pace: false })
    assert.ok(ok.cookie, `still refused after waiting the announced delay: ${ok.res.text}`)
    assert.deepEqual(ok.result, { isActive: true, username: 'other' })
    // the success ended the streak: one more wrong password is just wrong
    await sleep(150)
    const wrong = await login(host, 'other', 'wrong-again', { pace: false })
    assert.equal(wrong.error?.message, 'Username or password was incorrect', wrong.res.text)
    await sleep(150)
    assert.ok((await login(host, 'other', otherPw, { pace: false })).cookie)
  })

  test('11+ rapid wrong attempts from one address are throttled, and then the right password too', { timeout: 120000 }, async () => {
    await sleep(1100) // a fresh one-second window
    const attempts = await Promise.all(Array.from({ length: 15 }, (_, i) =>
      login(host, 'victim', `wrong-password-${i}`, { pace: false })))
    const messages = attempts.map((a) => {
      assert.equal(a.res.status, 200, `HTTP ${a.res.status}: ${a.res.text.slice(0, 200)}`)
      assert.equal(a.setCookie, undefined)
      assert.equal(a.error?.code, -32003, a.res.text)
      return a.error.message
    })
    const throttled = messages.filter((msg) => TOO_MANY.test(msg))
    const wrong = messages.filter((msg) => msg === 'Username or password was incorrect')
    assert.equal(throttled.length + wrong.length, messages.length, `unexpected messages: ${JSON.stringify(messages)}`)
    assert.ok(throttled.length >= 5, `15 attempts at once: at most 10 may be checked, got ${JSON.stringify(messages)}`)

    // the right password is refused while throttled, with the same error and no cookie
    const right = await login(host, 'victim', victimPw, { pace: false })
    assert.equal(right.res.status, 200)
    assert.equal(right.setCookie, undefined, 'a throttled login set a cookie')
    assert.equal(right.error?.code, -32003, right.res.text)
    assert.match(right.error?.message ?? '', TOO_MANY, right.res.text)

    // the same address is throttled for another account too
    const other = await login(host, 'other', otherPw, { pace: false })
    assert.equal(other.setCookie, undefined)
    assert.match(other.error?.message ?? '', TOO_MANY, `other account from the throttled address: ${other.res.text}`)

    // the limit is about logins only: other calls from the same address still work
    assert.deepEqual(await whoami(host), { isActive: false })
    const list = await gateway(host, USERS_API, 'list', [], { bearer: host.token })
    assert.equal(list.status, 200)
  })

  test('while throttled, login still answers a JSON-RPC error (HTTP 200), never an HTTP error', async () => {
    const r = await gateway(host, SESSIONS_API, 'login', [{ username: 'victim', password: victimPw }])
    assert.equal(r.status, 200)
    assert.deepEqual(Object.keys(r.json ?? {}).sort(), ['error', 'id', 'jsonrpc'], r.text)
    assert.equal(r.json.error.code, -32003, r.text)
    assert.match(r.json.error.message, TOO_MANY)
  })
})
