// The RPC gateway: POST /_atek/gateway?api=ID (reference §3.1-3.4).
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'

import {
  startHost, fixtureUrl, makeEchoPackage, install, servicesClient, getService, rpcError,
  testWithHost, removeTempDirs, waitForService, withTimeout
} from './lib/host.mjs'

const NOT_AUTHORIZED = '{"error":true,"message":"Not authorized"}'
const noProvider = (api) => `No service available which matches {"transport":"rpc","api":"${api}"}`

let host
const test = testWithHost(() => host)

describe('gateway', () => {
  before(async () => {
    host = await startHost({
      coreServices: [{ id: 'auth-a', sourceUrl: fixtureUrl('auth-app-1') }],
      // Long enough that a dying provider cannot be mistaken for a timeout.
      config: { gatewayTimeout: '60s' }
    })
    const echo = await install(host, { id: 'echo', sourceUrl: makeEchoPackage() })
    assert.equal(echo.status, 'active', `echo service did not start: ${JSON.stringify(echo)}`)
  }, { timeout: 120000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  describe('authentication', () => {
    const req = { jsonrpc: '2.0', id: 1, method: 'echo', params: [1] }

    test('no Authorization header: HTTP 401 with the exact body', async () => {
      const r = await host.rawCall('test.example/echo', req, { authorization: null })
      assert.equal(r.status, 401)
      assert.equal(r.text, NOT_AUTHORIZED)
    })

    test('unknown token: HTTP 401 with the exact body', async () => {
      const r = await host.rawCall('test.example/echo', req, {
        authorization: 'Bearer ' + crypto.randomBytes(32).toString('hex')
      })
      assert.equal(r.status, 401)
      assert.equal(r.text, NOT_AUTHORIZED)
    })

    test('the right token under another scheme, or an empty bearer: HTTP 401', async () => {
      for (const authorization of ['Basic ' + host.token, host.token, 'Bearer ', 'Bearer']) {
        const r = await host.rawCall('test.example/echo', req, { authorization })
        assert.equal(r.status, 401, `Authorization: ${authorization.replace(host.token, 'T')}`)
        assert.equal(r.text, NOT_AUTHORIZED)
      }
    })

    test('unauthenticated call to an unknown API is a 401, not a routing error', async () => {
      const r = await host.rawCall('nobody.example/api', req, { authorization: null })
      assert.equal(r.status, 401)
      assert.equal(r.text, NOT_AUTHORIZED)
    })
  })

  describe('envelopes', () => {
    test('success envelope, byte for byte (echo service, numeric id)', async () => {
      const r = await host.rawCall('test.example/echo', {
        jsonrpc: '2.0', id: 7, method: 'echo', params: [1, 'a', { b: null }]
      })
      assert.equal(r.status, 200)
      assert.equal(r.text, '{"jsonrpc":"2.0","id":7,"result":[1,"a",{"b":null}]}')
      assert.match(r.headers['content-type'] ?? '', /application\/json/)
    })

    test('success envelope, byte for byte (node-rpc app, string id)', async () => {
      const r = await host.rawCall('test-a.example/api', {
        jsonrpc: '2.0', id: 'abc', method: 'getName', params: []
      })
      assert.equal(r.status, 200)
      assert.equal(r.text, '{"jsonrpc":"2.0","id":"abc","result":"auth-app-1"}')
    })

    test('error envelope, byte for byte (no provider)', async () => {
      const api = 'nobody.example/api'
      const r = await host.rawCall(api, { jsonrpc: '2.0', id: 9, method: 'anything', params: [] })
      assert.equal(r.status, 200)
      assert.equal(r.text, JSON.stringify({
        jsonrpc: '2.0', id: 9, error: { code: -32601, message: noProvider(api) }
      }))
    })

    test('the caller\'s id comes back unchanged (large number, string with unicode)', async () => {
      for (const id of [9007199254740991, 'id-ü-✓', 0]) {
        const r = await host.rawCall('test.example/echo', { jsonrpc: '2.0', id, method: 'echo', params: [] })
        assert.equal(r.status, 200)
        assert.deepEqual(r.json, { jsonrpc: '2.0', id, result: [] })
      }
    })

    test('params that are not an array become [] (named params are dropped)', async () => {
      const named = await host.rawCall('test.example/echo', { jsonrpc: '2.0', id: 1, method: 'echo', params: { a: 1 } })
      assert.deepEqual(named.json, { jsonrpc: '2.0', id: 1, result: [] })
      const missing = await host.rawCall('test.example/echo', { jsonrpc: '2.0', id: 2, method: 'echo' })
      assert.deepEqual(missing.json, { jsonrpc: '2.0', id: 2, result: [] })
    })

    test('body that is not JSON: HTTP 400 with a JSON-RPC parse error', async () => {
      const r = await host.rawCall('test.example/echo', '{"jsonrpc":"2.0", this is not json')
      assert.equal(r.status, 400)
      assert.equal(r.text, '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}')
    })
  })

  describe('errors from providers', () => {
    test('no provider: -32601 with the original message (node-rpc client)', async () => {
      const api = 'nobody.example/api'
      const err = await rpcError(host.client(api).anything())
      assert.equal(err.code, -32601)
      assert.equal(err.message, noProvider(api))
    })

    test('unknown method on a node-rpc app: -32601 passed through', async () => {
      const err = await rpcError(host.client('test-a.example/api').x())
      assert.equal(err.code, -32601)
      assert.equal(err.message, 'Method not found: x')
      assert.equal(err.data, undefined)
    })

    test('error thrown in a node-rpc handler: -32003 with its message', async () => {
      const err = await rpcError(host.client('test-a.example/api').throwIt())
      assert.equal(err.code, -32003)
      assert.equal(err.message, 'boom')
    })

    test('node-rpc parameter validation: -32001 with data passed through', async () => {
      const err = await rpcError(host.client('test-a.example/api').echoString(5))
      assert.equal(err.code, -32001)
      assert.equal(err.message, 'Parameter 1 must be string')
      assert.equal(typeof err.data, 'object', 'the validator\'s data must be passed through')
      assert.equal(err.data?.keyword, 'type')
      // and the valid call works
      assert.equal(await host.client('test-a.example/api').echoString('hi'), 'hi')
    })

    test('provider error object is passed through unchanged (code, message, data)', async () => {
      const r = await host.rawCall('test.example/echo', { jsonrpc: '2.0', id: 3, method: 'fail', params: [] })
      assert.equal(r.status, 200)
      assert.deepEqual(r.json, {
        jsonrpc: '2.0', id: 3, error: { code: -32003, message: 'echo failure', data: { why: 'asked to' } }
      })
    })

    test('unknown method on the echo service: -32601', async () => {
      const err = await rpcError(host.client('test.example/echo').nope())
      assert.equal(err.code, -32601)
      assert.equal(err.message, 'Method not found: nope')
    })

    test('provider answers with a body that is not JSON: -32700 Parse error', async () => {
      const r = await host.rawCall('test.example/echo', { jsonrpc: '2.0', id: 11, method: 'garbage', params: [] })
      assert.equal(r.status, 200)
      assert.deepEqual(Object.keys(r.json ?? {}), ['jsonrpc', 'id', 'error'], r.text)
      assert.equal(r.json.id, 11)
      assert.equal(r.json.error.code, -32700)
      assert.equal(r.json.error.message, 'Parse error')
      // `data` is optional in the envelope; the original sent none, ours may explain.
    })

    test('provider dies mid-call: -32000 naming the service, no hang', async () => {
      const info = await install(host, {
        id: 'echo-crash',
        sourceUrl: makeEchoPackage({ api: 'test.example/echo-crash' }),
        config: { ECHO_CRASH_AFTER_MS: '1500' }
      })
      assert.equal(info.status, 'active', JSON.stringify(info))
      try {
        const t0 = Date.now()
        // Whichever process gets the call (the first one, or a restarted one) dies within
        // 1.5 s, long before the 20 s sleep ends and long before the 60 s gateway timeout.
        const r = await host.rawCall('test.example/echo-crash',
          { jsonrpc: '2.0', id: 5, method: 'sleep', params: [20000] }, {}, { timeout: 15000 })
        const elapsed = Date.now() - t0
        assert.equal(r.status, 200)
        assert.equal(r.json?.id, 5, r.text)
        assert.equal(r.json?.error?.code, -32000, r.text)
        assert.match(r.json.error.message, /echo-crash/, 'the message must name the service')
        assert.ok(elapsed < 10000, `answered after ${elapsed} ms`)
      } finally {
        await servicesClient(host).uninstall('echo-crash').catch(() => {})
      }
    })
  })

  describe('batches', () => {
    test('an array of requests gives an array of responses in order; notifications get no entry', async () => {
      const r = await host.rawCall('test.example/echo', [
        { jsonrpc: '2.0', id: 1, method: 'echo', params: ['one'] },
        { jsonrpc: '2.0', method: 'echo', params: ['notification'] },
        { jsonrpc: '2.0', id: 'two', method: 'fail', params: [] },
        { jsonrpc: '2.0', id: 3, method: 'echo', params: [3] }
      ])
      assert.equal(r.status, 200)
      assert.ok(Array.isArray(r.json), `expected an array, got ${r.text}`)
      assert.deepEqual(r.json, [
        { jsonrpc: '2.0', id: 1, result: ['one'] },
        { jsonrpc: '2.0', id: 'two', error: { code: -32003, message: 'echo failure', data: { why: 'asked to' } } },
        { jsonrpc: '2.0', id: 3, result: [3] }
      ])
    })

    test('a batch against a node-rpc app', async () => {
      const r = await host.rawCall('test-a.example/api', [
        { jsonrpc: '2.0', id: 10, method: 'getName', params: [] },
        { jsonrpc: '2.0', id: 11, method: 'throwIt', params: [] }
      ])
      assert.equal(r.status, 200)
      assert.deepEqual(r.json, [
        { jsonrpc: '2.0', id: 10, result: 'auth-app-1' },
        { jsonrpc: '2.0', id: 11, error: { code: -32003, message: 'boom' } }
      ])
    })

    test('a batch of more than 100 calls is refused whole, with the limit named', async () => {
      const calls = (n) => Array.from({ length: n }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'echo', params: [i] }))
      const ok = await host.rawCall('test.example/echo', calls(100))
      assert.equal(ok.status, 200)
      assert.equal(ok.json.length, 100)
      const r = await host.rawCall('test.example/echo', calls(101))
      assert.equal(r.status, 200)
      assert.equal(r.json.id, null)
      assert.equal(r.json.error.code, -32600)
      assert.match(r.json.error.message, /101 calls is over the limit of 100/)
    })
  })

  describe('routing', () => {
    test('first registration wins; the next provider takes over when the first stops', async () => {
      const api = 'test.example/dup'
      const svc = servicesClient(host)
      const first = await install(host, { id: 'dup-first', sourceUrl: makeEchoPackage({ api }) })
      const second = await install(host, { id: 'dup-second', sourceUrl: makeEchoPackage({ api }) })
      try {
        assert.equal(first.status, 'active')
        assert.equal(second.status, 'active')
        assert.notEqual(first.key, second.key)
        const who = async () => (await host.client(api).env()).serviceKey
        assert.equal(await who(), first.key, 'calls must go to the first registration')
        await svc.stop('dup-first')
        assert.equal(await who(), second.key, 'after the first stopped, calls go to the second')
        await svc.start('dup-first')
        await waitForService(host, 'dup-first', (i) => i.status === 'active')
        assert.equal(await who(), second.key, 'a restarted provider registers after the others')
        await svc.uninstall('dup-second')
        assert.equal(await who(), first.key, 'after the second is uninstalled, calls go to the first')
      } finally {
        await svc.uninstall('dup-first').catch(() => {})
        await svc.uninstall('dup-second').catch(() => {})
      }
    })

    test('concurrent calls are all answered with their own ids', async () => {
      const calls = Array.from({ length: 50 }, (_, i) =>
        host.rawCall('test.example/echo', { jsonrpc: '2.0', id: i, method: 'echo', params: [i] }))
      const results = await withTimeout(Promise.all(calls), 20000, '50 concurrent calls')
      results.forEach((r, i) => assert.deepEqual(r.json, { jsonrpc: '2.0', id: i, result: [i] }))
    })

    test('the echo service is the one we installed', async () => {
      const info = await getService(host, 'echo')
      assert.equal((await host.client('test.example/echo').env()).serviceKey, info.key)
    })
  })
})
