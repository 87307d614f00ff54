// Gateway limits: gatewayTimeout, maxBodyBytes and maxResponseBytes (our additions to the
// contract; the original had neither a provider timeout nor body limits).
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startHost, makeEchoPackage, install, testWithHost, removeTempDirs, fixtureUrl, streamUpload } from './lib/host.mjs'
import { appHost } from './lib/users.mjs'

const LIMIT = 2048
// maxResponseBytes: larger than maxBodyBytes, so a small request (echo's `repeat`) can ask for
// an answer on either side of it.
const RESPONSE_LIMIT = 64 * 1024
let host
const test = testWithHost(() => host)

describe('gateway limits', () => {
  before(async () => {
    // The brief said maxBodyBytes 1000; the host refuses values under 1024 at start-up
    // ("must be at least 1024 bytes"), so a small value it accepts is used instead.
    // One HTTP thread, so every call goes through the same per-thread pool of connections to
    // the echo service: a connection left broken by an oversized answer would be met again.
    host = await startHost({
      config: { gatewayTimeout: '1s', maxBodyBytes: LIMIT, maxResponseBytes: RESPONSE_LIMIT, httpThreads: 1 }
    })
    const echo = await install(host, { id: 'echo-slow', sourceUrl: makeEchoPackage() })
    assert.equal(echo.status, 'active', `echo service did not start: ${JSON.stringify(echo)}`)
    const app = await install(host, { id: 'uploads', sourceUrl: fixtureUrl('sub-echo') })
    assert.equal(app.status, 'active', `sub-echo did not start: ${JSON.stringify(app)}`)
  }, { timeout: 120000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test('provider slower than gatewayTimeout: -32000 naming the service and the limit, on time', async () => {
    const t0 = Date.now()
    const r = await host.rawCall('test.example/echo',
      { jsonrpc: '2.0', id: 21, method: 'sleep', params: [3000] }, {}, { timeout: 10000 })
    const elapsed = Date.now() - t0
    assert.equal(r.status, 200)
    assert.equal(r.json?.jsonrpc, '2.0', r.text)
    assert.equal(r.json?.id, 21, r.text)
    assert.equal(r.json?.error?.code, -32000, r.text)
    assert.match(r.json.error.message, /echo-slow/, 'the message must name the service')
    assert.match(r.json.error.message, /\b1s\b/, 'the message must name the timeout')
    assert.ok(elapsed < 2500, `answered after ${elapsed} ms (timeout is 1s)`)
  })

  test('a call within the timeout still works, also right after a timed-out one', async () => {
    const r = await host.rawCall('test.example/echo', { jsonrpc: '2.0', id: 22, method: 'sleep', params: [100] })
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 22, result: true })
    const e = await host.rawCall('test.example/echo', { jsonrpc: '2.0', id: 23, method: 'echo', params: ['x'] })
    assert.deepEqual(e.json, { jsonrpc: '2.0', id: 23, result: ['x'] })
  })

  test('body over maxBodyBytes: HTTP 413 with a JSON-RPC error naming the limit', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'echo', params: ['x'.repeat(LIMIT + 200)] })
    assert.ok(Buffer.byteLength(body) > LIMIT)
    const r = await host.rawCall('test.example/echo', body)
    assert.equal(r.status, 413)
    assert.equal(r.json?.jsonrpc, '2.0', r.text)
    assert.equal(r.json?.id, null, r.text)
    assert.equal(r.json?.error?.code, -32600, r.text)
    assert.ok(r.json.error.message.includes(String(LIMIT)), `the message must name the limit: ${r.json.error.message}`)
  })

  test('body just under maxBodyBytes is accepted', async () => {
    const pad = 'y'.repeat(LIMIT - 100)
    const body = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'echo', params: [pad] })
    assert.ok(Buffer.byteLength(body) < LIMIT)
    const r = await host.rawCall('test.example/echo', body)
    assert.equal(r.status, 200)
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 2, result: [pad] })
  })

  test('the body limit also applies before authentication is known to be valid', async () => {
    // An unauthenticated oversized body must not be buffered and forwarded: 401 or 413 both
    // refuse it; anything else is a bug.
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'echo', params: ['z'.repeat(LIMIT * 3)] })
    const r = await host.rawCall('test.example/echo', body, { authorization: null })
    assert.ok(r.status === 401 || r.status === 413, `got HTTP ${r.status}: ${r.text}`)
  })

  /** `repeat [n]`: the echo service answers a string of `n` x's (an answer of n + ~40 bytes). */
  const repeat = (id, n) => host.rawCall('test.example/echo',
    { jsonrpc: '2.0', id, method: 'repeat', params: [n] }, {}, { timeout: 10000 })
  const tooLarge = {
    code: -32000,
    message: `The service echo-slow answered with more than ${RESPONSE_LIMIT} bytes (maxResponseBytes) or broke off its answer`
  }

  test('answer over maxResponseBytes: -32000 naming the service and the limit, at once', async () => {
    for (const n of [RESPONSE_LIMIT + 1, 4 * RESPONSE_LIMIT, 8 << 20]) {
      const t0 = Date.now()
      const r = await repeat(31, n)
      const elapsed = Date.now() - t0
      assert.equal(r.status, 200, r.text.slice(0, 300))
      assert.deepEqual(r.json, { jsonrpc: '2.0', id: 31, error: tooLarge }, r.text.slice(0, 300))
      // Well within gatewayTimeout (1s): the host stops reading at the limit, it does not
      // wait for anything.
      assert.ok(elapsed < 900, `answered after ${elapsed} ms`)
    }
  })

  test('answer just under maxResponseBytes passes whole', async () => {
    // The service's answer is {"jsonrpc":"2.0","id":<host's id>,"result":"x…"}: 35 bytes
    // plus the id's digits plus n, so n = limit - 64 stays under it for any id.
    const n = RESPONSE_LIMIT - 64
    const r = await repeat(32, n)
    assert.equal(r.status, 200)
    assert.equal(r.json?.error, undefined, r.text.slice(0, 300))
    assert.equal(r.json.id, 32)
    assert.equal(r.json.result, 'x'.repeat(n))
  })

  test('after oversized answers the host still serves, and the same provider answers the next call', async () => {
    const before = await host.client('atek.cloud/services-api').get('echo-slow')
    for (let i = 0; i < 5; i++) {
      const big = await repeat(40 + i, 2 * RESPONSE_LIMIT)
      assert.deepEqual(big.json?.error, tooLarge, big.text.slice(0, 300))
      const small = await host.rawCall('test.example/echo',
        { jsonrpc: '2.0', id: 50 + i, method: 'echo', params: [i] }, {}, { timeout: 5000 })
      assert.deepEqual(small.json, { jsonrpc: '2.0', id: 50 + i, result: [i] })
      const under = await repeat(60 + i, RESPONSE_LIMIT - 64)
      assert.equal(under.json?.result?.length, RESPONSE_LIMIT - 64, under.text.slice(0, 300))
    }
    // Concurrent calls, oversized and not, each get their own answer.
    const calls = []
    for (let i = 0; i < 8; i++) {
      calls.push(i % 2 ? repeat(70 + i, 3 * RESPONSE_LIMIT) : repeat(70 + i, 1000 + i))
    }
    const answers = await Promise.all(calls)
    answers.forEach((r, i) => {
      if (i % 2) assert.deepEqual(r.json, { jsonrpc: '2.0', id: 70 + i, error: tooLarge })
      else assert.deepEqual(r.json, { jsonrpc: '2.0', id: 70 + i, result: 'x'.repeat(1000 + i) })
    })
    // The service itself is unharmed: same process, still active.
    const after = await host.client('atek.cloud/services-api').get('echo-slow')
    assert.equal(after.status, 'active')
    assert.equal(after.pid, before.pid)
  })

  /** POST through the app's subdomain with the system token; the body goes out in `chunks`
   * pieces of 16 KiB, `gapMs` apart. */
  const proxiedUpload = ({ path, chunks, gapMs }) => streamUpload({
    port: host.port,
    headers: { host: appHost(host, 'uploads'), authorization: 'Bearer ' + host.token },
    size: chunks * 16 * 1024,
    chunk: 16 * 1024,
    path,
    gapMs,
    timeout: 20000
  })

  test('the subdomain proxy: an upload that keeps coming for longer than gatewayTimeout goes through', async () => {
    const r = await proxiedUpload({ chunks: 12, gapMs: 200 })
    assert.ok(r.elapsed > 2000, `the upload took only ${r.elapsed} ms`)
    assert.equal(r.status, 200, r.text.slice(0, 300))
    assert.equal(r.json.bodyLength, 12 * 16 * 1024)
    assert.equal(r.json.bodySha256, r.sha256)
  })

  test('the subdomain proxy: an app that does not answer within gatewayTimeout of getting the request is a 504, on time', async () => {
    const r = await proxiedUpload({ path: '/upload?wait=3000', chunks: 2, gapMs: 0 })
    assert.equal(r.status, 504, r.text.slice(0, 300))
    assert.match(r.text, /gatewayTimeout/)
    assert.ok(r.elapsed < 2500, `answered after ${r.elapsed} ms (timeout is 1s)`)
  })
})
