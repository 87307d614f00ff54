// The proxy transport: WebSocket at ws://HOST/_atek/gateway?api=ID piped to the provider
// (reference §3.5), with authentication (our deliberate fix: the original did not check).
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import http from 'node:http'
import net from 'node:net'

import WebSocket from 'ws'
import { ws as rpcWs } from '@atek-cloud/node-rpc'

import {
  startHost, fixtureUrl, getService, procEnv, testWithHost, removeTempDirs, withTimeout, rpcError
} from './lib/host.mjs'

const API = 'test.example/ws-echo'
const gatewayPath = (query) => '/_atek/gateway?' + new URLSearchParams(query).toString()

let host
let echoInfo
const test = testWithHost(() => host)

/** Opens a WebSocket with the `ws` library; resolves once open. */
function openWs (query, headers = {}) {
  const sock = new WebSocket(`ws://127.0.0.1:${host.port}${gatewayPath(query)}`, { headers, handshakeTimeout: 5000 })
  const messages = []
  sock.on('message', (data) => messages.push(Buffer.from(data)))
  sock.on('error', () => {})
  const opened = withTimeout(new Promise((resolve, reject) => {
    sock.once('open', resolve)
    sock.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)))
    sock.once('error', reject)
  }), 8000, 'WebSocket open')
  return { sock, messages, opened }
}

/** Waits until the concatenated received bytes satisfy `pred(text, messages)`. */
async function receive (messages, pred, label, timeout = 8000) {
  const deadline = Date.now() + timeout
  for (;;) {
    const text = Buffer.concat(messages).toString('utf8')
    if (pred(text, messages)) return text
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}; received so far: ${JSON.stringify(text.slice(0, 500))}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Sends an upgrade request with plain http and returns the status (101 if accepted). */
function upgradeStatus (query, headers = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: host.port,
      path: gatewayPath(query),
      agent: false,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': crypto.randomBytes(16).toString('base64'),
        ...headers
      }
    })
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode) })
    req.on('response', (res) => { res.resume(); resolve(res.statusCode) })
    req.on('error', reject)
    req.end()
  }), 8000, 'upgrade request')
}

/** A masked client frame (FIN set). */
function clientFrame (payload, opcode = 0x1) {
  const data = Buffer.from(payload)
  const mask = crypto.randomBytes(4)
  let header
  if (data.length < 126) {
    header = Buffer.from([0x80 | opcode, 0x80 | data.length])
  } else if (data.length < 65536) {
    header = Buffer.alloc(4)
    header[0] = 0x80 | opcode; header[1] = 0x80 | 126; header.writeUInt16BE(data.length, 2)
  } else {
    header = Buffer.alloc(10)
    header[0] = 0x80 | opcode; header[1] = 0x80 | 127; header.writeBigUInt64BE(BigInt(data.length), 2)
  }
  const masked = Buffer.alloc(data.length)
  for (let i = 0; i < data.length; i++) masked[i] = data[i] ^ mask[i % 4]
  return Buffer.concat([header, mask, masked])
}

/** Parses unmasked server frames from `buf`; returns {frames: [{opcode, payload}], rest}. */
function parseFrames (buf) {
  const frames = []
  let off = 0
  for (;;) {
    if (buf.length - off < 2) break
    const opcode = buf[off] & 0x0f
    const masked = (buf[off + 1] & 0x80) !== 0
    let len = buf[off + 1] & 0x7f
    let hdr = 2
    if (len === 126) { if (buf.length - off < 4) break; len = buf.readUInt16BE(off + 2); hdr = 4 }
    else if (len === 127) { if (buf.length - off < 10) break; len = Number(buf.readBigUInt64BE(off + 2)); hdr = 10 }
    const maskLen = masked ? 4 : 0
    if (buf.length - off < hdr + maskLen + len) break
    let payload = buf.subarray(off + hdr + maskLen, off + hdr + maskLen + len)
    if (masked) {
      const m = buf.subarray(off + hdr, off + hdr + 4)
      payload = Buffer.from(payload.map((b, i) => b ^ m[i % 4]))
    }
    frames.push({ opcode, payload })
    off += hdr + maskLen + len
  }
  return { frames, rest: buf.subarray(off) }
}

describe('proxy transport', () => {
  before(async () => {
    host = await startHost({ coreServices: [{ id: 'ws-echo', sourceUrl: fixtureUrl('ws-echo') }] })
    echoInfo = await getService(host, 'ws-echo')
    assert.equal(echoInfo.status, 'active', JSON.stringify(echoInfo))
  }, { timeout: 120000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test('node-rpc ws() with access_token: identity hello, and bytes written immediately are echoed', async () => {
    const stream = rpcWs({ api: API, access_token: host.token }, 'ws', '127.0.0.1', host.port)
    const chunks = []
    const errors = []
    stream.on('data', (c) => chunks.push(Buffer.from(c)))
    stream.on('error', (e) => errors.push(e))
    try {
      stream.write('ping-early') // before the connection is even open
      const text = await receive(chunks, (t) => t.includes('hello system/system') && t.includes('ping-early'),
        'hello + echo over node-rpc ws()')
      assert.ok(text.includes('hello system/system'), text)
      stream.write('second')
      await receive(chunks, (t) => t.includes('second'), 'second echo')
      assert.deepEqual(errors, [])
    } finally {
      stream.destroy()
    }
  })

  test('Authorization header: messages sent right at open all arrive, in order', async () => {
    const { sock, messages, opened } = openWs({ api: API }, { authorization: 'Bearer ' + host.token })
    try {
      await opened
      for (const m of ['m1', 'm2', 'm3']) sock.send(m)
      const text = await receive(messages, (t) => t.includes('m3') && t.includes('hello '), 'three echoes')
      assert.ok(text.includes('hello system/system'), text)
      const rest = text.replace('hello system/system', '')
      assert.equal(rest, 'm1m2m3')
    } finally {
      sock.terminate()
    }
  })

  test('early bytes: frames sent in the same packet as the upgrade request are not lost', async () => {
    const socket = net.connect(host.port, '127.0.0.1')
    const chunks = []
    socket.on('data', (c) => chunks.push(c))
    socket.on('error', () => {})
    try {
      await withTimeout(new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) }), 5000, 'connect')
      const request =
        `GET ${gatewayPath({ api: API })} HTTP/1.1\r\n` +
        `Host: 127.0.0.1:${host.port}\r\n` +
        'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n` +
        'Sec-WebSocket-Version: 13\r\n' +
        `Authorization: Bearer ${host.token}\r\n\r\n`
      socket.write(Buffer.concat([Buffer.from(request), clientFrame('early-1'), clientFrame('early-2')]))
      let payloads = []
      await withTimeout((async () => {
        for (;;) {
          const all = Buffer.concat(chunks)
          const end = all.indexOf('\r\n\r\n')
          if (end >= 0) {
            const statusLine = all.subarray(0, all.indexOf('\r\n')).toString()
            assert.match(statusLine, /^HTTP\/1\.1 101/, `upgrade answer: ${all.subarray(0, end).toString()}`)
            payloads = parseFrames(all.subarray(end + 4)).frames.filter((f) => f.opcode <= 2).map((f) => f.payload)
            const text = Buffer.concat(payloads).toString()
            if (text.includes('hello ') && text.includes('early-2')) return
          }
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
      })(), 8000, 'hello and both early frames echoed')
      const text = Buffer.concat(payloads).toString()
      assert.equal(text.replace('hello system/system', ''), 'early-1early-2')
      socket.write(clientFrame(Buffer.from([0x03, 0xe8]), 0x8)) // close 1000
    } finally {
      socket.destroy()
    }
  })

  test('no credentials: the upgrade is refused with HTTP 401', async () => {
    assert.equal(await upgradeStatus({ api: API }), 401)
  })

  test('wrong token (header or access_token): HTTP 401', async () => {
    const wrong = crypto.randomBytes(32).toString('hex')
    assert.equal(await upgradeStatus({ api: API }, { authorization: 'Bearer ' + wrong }), 401)
    assert.equal(await upgradeStatus({ api: API, access_token: wrong }), 401)
  })

  test('node-rpc ws() without a token does not get through', async () => {
    const stream = rpcWs({ api: API }, 'ws', '127.0.0.1', host.port)
    const chunks = []
    stream.on('data', (c) => chunks.push(Buffer.from(c)))
    const outcome = await withTimeout(new Promise((resolve) => {
      stream.on('error', (e) => resolve('error: ' + e.message))
      stream.on('close', () => resolve('closed'))
      stream.on('end', () => resolve('ended'))
    }), 8000, 'unauthenticated node-rpc ws() to fail')
    stream.destroy()
    assert.equal(Buffer.concat(chunks).length, 0, `received data: ${Buffer.concat(chunks)}`)
    assert.match(outcome, /401|error|closed|ended/)
  })

  test('unknown API (authenticated): HTTP 404', async () => {
    assert.equal(await upgradeStatus({ api: 'nobody.example/ws' }, { authorization: 'Bearer ' + host.token }), 404)
  })

  test('an RPC call to a proxy-only API finds no rpc provider', async () => {
    const err = await rpcError(host.client(API).anything())
    assert.equal(err.code, -32601)
    assert.equal(err.message, `No service available which matches {"transport":"rpc","api":"${API}"}`)
  })

  test('access_token is not forwarded to the app; identity headers are', async () => {
    const { sock, messages, opened } = openWs({ api: API, access_token: host.token })
    try {
      await opened
      sock.send('__info__')
      const text = await receive(messages, (t) => t.includes('{"info"'), 'info reply')
      const { info } = JSON.parse(text.slice(text.indexOf('{"info"')))
      assert.ok(!info.url.includes('access_token'), `app saw URL ${info.url}`)
      assert.ok(!info.url.includes(host.token), 'app saw the token in its URL')
      assert.equal(info.headers['atek-auth-user'], 'system')
      assert.equal(info.headers['atek-auth-service'], 'system')
      for (const [k, v] of Object.entries(info.headers)) {
        assert.ok(!String(v).includes(host.token), `app saw the token in header ${k}`)
      }
    } finally {
      sock.terminate()
    }
  })

  test('a system token sent in the Authorization header is not forwarded to the app either', async () => {
    const { sock, messages, opened } = openWs({ api: API }, { authorization: 'Bearer ' + host.token })
    try {
      await opened
      sock.send('__info__')
      const text = await receive(messages, (t) => t.includes('{"info"'), 'info reply')
      const { info } = JSON.parse(text.slice(text.indexOf('{"info"')))
      for (const [k, v] of Object.entries(info.headers)) {
        assert.ok(!String(v).includes(host.token), `app saw the token in header ${k}`)
      }
    } finally {
      sock.terminate()
    }
  })

  test('caller-sent identity headers are replaced on the proxy transport', async () => {
    const { sock, messages, opened } = openWs({ api: API }, {
      authorization: 'Bearer ' + host.token,
      'atek-auth-user': 'mallory',
      'Atek-Auth-Service': 'mallory-svc'
    })
    try {
      await opened
      const text = await receive(messages, (t) => t.includes('hello '), 'hello')
      assert.ok(text.startsWith('hello system/system'), text)
    } finally {
      sock.terminate()
    }
  })

  test('a service token identifies the calling service on the proxy transport', async () => {
    const info = await getService(host, 'ws-echo')
    const token = procEnv(info.pid).ATEK_HOST_BEARER_TOKEN
    assert.ok(token, 'ATEK_HOST_BEARER_TOKEN not found in the service environment')
    const { sock, messages, opened } = openWs({ api: API, access_token: token })
    try {
      await opened
      const text = await receive(messages, (t) => t.includes('hello '), 'hello')
      assert.ok(text.startsWith(`hello system/${info.key}`), text)
    } finally {
      sock.terminate()
    }
  })

  test('256 KiB of binary data round-trips intact', async () => {
    const { sock, messages, opened } = openWs({ api: API }, { authorization: 'Bearer ' + host.token })
    try {
      await opened
      await receive(messages, (t) => t.includes('hello '), 'hello')
      messages.length = 0
      const data = crypto.randomBytes(256 * 1024)
      sock.send(data.subarray(0, 100 * 1024))
      sock.send(data.subarray(100 * 1024))
      await receive(messages, () => Buffer.concat(messages).length >= data.length, '256 KiB echoed', 15000)
      assert.ok(Buffer.concat(messages).equals(data), 'echoed bytes differ')
    } finally {
      sock.terminate()
    }
  })

  test('several connections at once stay separate', async () => {
    const conns = Array.from({ length: 5 }, () => openWs({ api: API }, { authorization: 'Bearer ' + host.token }))
    try {
      await Promise.all(conns.map((c) => c.opened))
      conns.forEach((c, i) => c.sock.send(`conn-${i}`))
      await Promise.all(conns.map((c, i) => receive(c.messages, (t) => t.includes(`conn-${i}`), `echo on conn ${i}`)))
      conns.forEach((c, i) => {
        const text = Buffer.concat(c.messages).toString()
        assert.equal(text.replace('hello system/system', ''), `conn-${i}`)
      })
    } finally {
      for (const c of conns) c.sock.terminate()
    }
  })
})
