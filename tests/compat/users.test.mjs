// atek.cloud/users-api through the original typed client `@atek-cloud/users-api` 1.1.0
// (reference §4.3, §7.1; spec: storage, usernames, roles, passwords, last admin).
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'

import { User as UserClass, UserSettings as UserSettingsClass } from '@atek-cloud/users-api'
import { ajv } from '@atek-cloud/node-rpc'

import {
  startHost, fixtureUrl, install, getService, procEnv, rpcError, testWithHost, removeTempDirs, waitFor,
  storedBytes, serverRows
} from './lib/host.mjs'
import {
  USERS_API, typedUsers, createUser, gateway, call, loginOk, login, randomPassword, req, whoami
} from './lib/users.mjs'

let host
let h2Ref
const test = testWithHost(() => [host, h2Ref])
const validateUser = ajv.compile(UserClass.schema)
const validateSettings = ajv.compile(UserSettingsClass.schema)

// Every password used in this file; none may ever appear in a reply, a state file or the log.
const passwords = new Set()
const pw = () => { const p = randomPassword(); passwords.add(p); return p }
const replies = [] // raw reply texts collected along the way

function assertUser (u, label) {
  assert.ok(validateUser(u), `${label}: not a User per the original schema: ${JSON.stringify(validateUser.errors)} ${JSON.stringify(u)}`)
  assert.match(u.key, /^[0-9a-f]{16}$/, `${label}: user key must be 16 lowercase hex chars`)
  assert.ok(['', 'admin'].includes(u.role), `${label}: role ${JSON.stringify(u.role)}`)
  assert.deepEqual(Object.keys(u).sort(), ['key', 'role', 'username'], `${label}: unexpected fields in ${JSON.stringify(u)}`)
}

function assertNoSecrets (text, label) {
  for (const p of passwords) assert.ok(!text.includes(p), `${label}: contains a password: ${text.slice(0, 300)}`)
  assert.ok(!/\$argon2/.test(text), `${label}: contains a password hash: ${text.slice(0, 300)}`)
}

/** users-api call with raw http (bearer or cookie); records the reply text. */
async function raw (method, params, opts = { bearer: host.token }) {
  const r = await gateway(host, USERS_API, method, params, opts)
  replies.push(r.text)
  return r
}

let root, rootPw // the admin user (created with the system token)
let alice, alicePw
let aliceToken // bearer token of a service owned by alice
let aliceCookie

describe('users-api', () => {
  before(async () => {
    host = await startHost()
    rootPw = pw()
    root = await createUser(host, { username: 'root', password: rootPw, role: 'admin' })
  }, { timeout: 60000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test('create() with the system token returns a User of the original shape (role admin)', async () => {
    assertUser(root, 'create(root)')
    assert.equal(root.username, 'root')
    assert.equal(root.role, 'admin')
  })

  test('the last admin can be neither deleted nor demoted', async () => {
    const users = typedUsers(host)
    const del = await rpcError(users.delete(root.key))
    assert.equal(del.code, -32003, `delete(last admin): ${del.message}`)
    const demote = await rpcError(users.update(root.key, { role: '' }))
    assert.equal(demote.code, -32003, `update(last admin, role ''): ${demote.message}`)
    assert.equal((await users.get(root.key)).role, 'admin')
  })

  test('create() without a role makes a plain user (role ""), raw reply without a password', async () => {
    alicePw = pw()
    const r = await raw('create', [{ username: 'alice', password: alicePw }])
    assert.equal(r.status, 200)
    assert.ok(r.json && r.json.result, r.text)
    alice = r.json.result
    assertUser(alice, 'create(alice)')
    assert.equal(alice.username, 'alice')
    assert.equal(alice.role, '')
    assert.notEqual(alice.key, root.key)
    assertNoSecrets(r.text, 'create reply')
  })

  test('list() returns {users: User[]} with every user and no password fields', async () => {
    const r = await raw('list', [])
    assert.equal(r.status, 200)
    const list = r.json.result
    assert.deepEqual(Object.keys(list), ['users'])
    for (const u of list.users) assertUser(u, `list ${u.username}`)
    assert.deepEqual(list.users.map((u) => u.username).sort(), ['alice', 'root'])
    assertNoSecrets(r.text, 'list reply')
    // and the typed client agrees
    const typed = await typedUsers(host).list()
    assert.deepEqual(typed.users.map((u) => u.key).sort(), [alice.key, root.key].sort())
  })

  test('get(key) returns the User; an unknown key is an error', async () => {
    assert.deepEqual(await typedUsers(host).get(alice.key), alice)
    const r = await raw('get', [alice.key])
    assertNoSecrets(r.text, 'get reply')
    const e = await rpcError(typedUsers(host).get('0123456789abcdef'))
    assert.equal(e.code, -32003, e.message)
  })

  test('usernames are unique case-insensitively (create and rename)', async () => {
    const users = typedUsers(host)
    for (const username of ['alice', 'ALICE', 'Alice']) {
      const e = await rpcError(users.create({ username, password: pw() }))
      assert.equal(e.code, -32003, `create(${username}): ${e.message}`)
    }
    const bob = await users.create({ username: 'bob', password: pw() })
    const e = await rpcError(users.update(bob.key, { username: 'aLiCe' }))
    assert.equal(e.code, -32003, `rename to aLiCe: ${e.message}`)
    assert.equal((await users.get(bob.key)).username, 'bob')
    assert.equal((await users.list()).users.filter((u) => u.username.toLowerCase() === 'alice').length, 1)
    await users.delete(bob.key)
  })

  test('`system` is reserved, in any case', async () => {
    const users = typedUsers(host)
    for (const username of ['system', 'System', 'SYSTEM']) {
      const e = await rpcError(users.create({ username, password: pw() }))
      assert.ok([-32001, -32003].includes(e.code), `create(${username}): ${e.code} ${e.message}`)
    }
    const e = await rpcError(users.update(alice.key, { username: 'system' }))
    assert.ok([-32001, -32003].includes(e.code), `rename to system: ${e.code} ${e.message}`)
    assert.ok(!(await users.list()).users.some((u) => u.username.toLowerCase() === 'system'))
  })

  test('bad usernames, short passwords and unknown roles are refused', async () => {
    const users = typedUsers(host)
    const bad = [
      { username: 'ab', password: pw() }, // too short
      { username: 'x'.repeat(65), password: pw() }, // too long
      { username: '1abc', password: pw() }, // must start with a letter
      { username: '-abc', password: pw() },
      { username: 'has space', password: pw() },
      { username: 'sl/ash', password: pw() },
      { username: 'ünï', password: pw() },
      { username: 'shortpw', password: '1234567' }, // < 8 characters
      { username: 'badrole', password: pw(), role: 'superuser' }
    ]
    for (const u of bad) {
      const e = await rpcError(users.create(u))
      assert.ok([-32001, -32003].includes(e.code), `create(${JSON.stringify(u)}): ${e.code} ${e.message}`)
    }
    const names = (await users.list()).users.map((u) => u.username)
    for (const u of bad) assert.ok(!names.includes(u.username), `${u.username} was created anyway`)
    // the allowed alphabet: letter first, then letters, digits, - _ .
    const ok = await users.create({ username: 'Zed_9-x.y', password: pw() })
    assertUser(ok, 'create(Zed_9-x.y)')
    assert.equal(ok.username, 'Zed_9-x.y')
    await users.delete(ok.key)
  })

  test('update() renames, changes the role and the password, and returns the User', async () => {
    const users = typedUsers(host)
    const p1 = pw()
    const carol = await users.create({ username: 'carol', password: p1 })
    const renamed = await users.update(carol.key, { username: 'caroline' })
    assertUser(renamed, 'update(username)')
    assert.deepEqual(renamed, { key: carol.key, username: 'caroline', role: '' })
    const promoted = await users.update(carol.key, { role: 'admin' })
    assert.equal(promoted.role, 'admin')
    const p2 = pw()
    const r = await raw('update', [carol.key, { password: p2 }])
    assert.equal(r.status, 200, r.text)
    assertUser(r.json.result, 'update(password)')
    assertNoSecrets(r.text, 'update reply')
    // the new name and password log in, the old ones do not
    assert.ok(await loginOk(host, 'caroline', p2))
    const old = await login(host, 'caroline', p1)
    assert.equal(old.error?.message, 'Username or password was incorrect', old.res.text)
    const oldName = await login(host, 'carol', p2)
    assert.equal(oldName.error?.message, 'Username or password was incorrect', oldName.res.text)
    // two admins now: one may be demoted
    const demoted = await users.update(carol.key, { role: '' })
    assert.equal(demoted.role, '')
    await users.delete(carol.key)
  })

  test('delete() removes the user: get fails, the user is not listed and cannot log in', async () => {
    const users = typedUsers(host)
    const p = pw()
    const dave = await users.create({ username: 'dave', password: p })
    assert.ok(await loginOk(host, 'dave', p))
    const r = await raw('delete', [dave.key])
    assert.equal(r.status, 200)
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 1, result: null })
    const e = await rpcError(users.get(dave.key))
    assert.equal(e.code, -32003)
    assert.ok(!(await users.list()).users.some((u) => u.key === dave.key))
    const l = await login(host, 'dave', p)
    assert.equal(l.error?.message, 'Username or password was incorrect', l.res.text)
    // the name is free again, with a new key
    const dave2 = await users.create({ username: 'dave', password: pw() })
    assert.notEqual(dave2.key, dave.key)
    await users.delete(dave2.key)
  })

  test('settings: getSettings() is {} at first, updateSettings() returns and keeps them', async () => {
    const users = typedUsers(host)
    const s0 = await users.getSettings(alice.key)
    assert.ok(validateSettings(s0), JSON.stringify(s0))
    assert.deepEqual(s0, {})
    const s1 = await users.updateSettings(alice.key, { mainServiceId: 'some-app' })
    assert.ok(validateSettings(s1), JSON.stringify(s1))
    assert.deepEqual(s1, { mainServiceId: 'some-app' })
    assert.deepEqual(await users.getSettings(alice.key), { mainServiceId: 'some-app' })
    await users.updateSettings(alice.key, { mainServiceId: '' }) // an empty id clears it
    const e = await rpcError(users.getSettings('0123456789abcdef'))
    assert.equal(e.code, -32003)
  })

  describe('permissions', () => {
    before(async () => {
      // a service owned by alice: its bearer token acts as alice (reference §3.6, §4)
      const info = await install(host, { id: 'alice-app', sourceUrl: fixtureUrl('simple-app'), user: 'alice' })
      assert.equal(info.status, 'active', JSON.stringify(info))
      assert.equal(info.settings.owningUserKey, alice.key)
      aliceToken = procEnv((await getService(host, 'alice-app')).pid).ATEK_HOST_BEARER_TOKEN
      assert.ok(aliceToken)
      aliceCookie = await loginOk(host, 'alice', alicePw)
    }, { timeout: 90000 })

    test('no credentials: 401 {"error":true,"message":"Not authorized"} for every method', async () => {
      for (const [method, params] of [['list', []], ['get', [alice.key]], ['create', [{ username: 'zz1', password: pw() }]], ['getSettings', [alice.key]]]) {
        const r = await raw(method, params, {})
        assert.equal(r.status, 401, `${method}: ${r.text}`)
        assert.deepEqual(r.json, { error: true, message: 'Not authorized' })
      }
    })

    for (const via of ['service bearer token', 'session cookie']) {
      const opts = () => via === 'session cookie' ? { cookie: aliceCookie } : { bearer: aliceToken }

      test(`non-admin (${via}): list/create/update/delete refused with -32003 Not authorized`, async () => {
        const calls = [
          ['list', []],
          ['create', [{ username: 'mallory', password: pw() }]],
          ['create', [{ username: 'mallory2', password: pw(), role: 'admin' }]],
          ['update', [alice.key, { role: 'admin' }]],
          ['update', [root.key, { password: pw() }]],
          ['delete', [root.key]],
          ['delete', [alice.key]]
        ]
        for (const [method, params] of calls) {
          const r = await raw(method, params, opts())
          assert.equal(r.status, 200, `${method}: ${r.text}`)
          assert.deepEqual(r.json?.error, { code: -32003, message: 'Not authorized' }, `${method}(${JSON.stringify(params)}): ${r.text}`)
        }
        const users = typedUsers(host)
        assert.equal((await users.get(alice.key)).role, '')
        assert.equal((await users.get(root.key)).role, 'admin')
        assert.ok(!(await users.list()).users.some((u) => u.username.startsWith('mallory')))
      })

      test(`non-admin (${via}): get/getSettings/updateSettings on self, refused for another user`, async () => {
        assert.deepEqual(await call(host, USERS_API, 'get', [alice.key], opts()), alice)
        assert.deepEqual(await call(host, USERS_API, 'updateSettings', [alice.key, { mainServiceId: 'alice-app' }], opts()), { mainServiceId: 'alice-app' })
        assert.deepEqual(await call(host, USERS_API, 'getSettings', [alice.key], opts()), { mainServiceId: 'alice-app' })
        for (const [method, params] of [['get', [root.key]], ['getSettings', [root.key]], ['updateSettings', [root.key, { mainServiceId: 'alice-app' }]]]) {
          const r = await raw(method, params, opts())
          assert.deepEqual(r.json?.error, { code: -32003, message: 'Not authorized' }, `${method}: ${r.text}`)
        }
        assert.deepEqual(await typedUsers(host).getSettings(root.key), {})
      })
    }

    test('the original typed client with a service token (an app calling users-api)', async () => {
      const users = typedUsers(host, 'Bearer ' + aliceToken)
      assert.deepEqual(await users.get(alice.key), alice)
      const e = await rpcError(users.list())
      assert.equal(e.code, -32003)
      assert.equal(e.message, 'Not authorized')
    })

    test('an admin user (session cookie) may list, create, update and delete', async () => {
      const rootCookie = await loginOk(host, 'root', rootPw)
      const list = await call(host, USERS_API, 'list', [], { cookie: rootCookie })
      assert.ok(list.users.some((u) => u.key === alice.key))
      const p = pw()
      const eve = await call(host, USERS_API, 'create', [{ username: 'eve', password: p }], { cookie: rootCookie })
      assertUser(eve, 'create by admin')
      assert.deepEqual(await call(host, USERS_API, 'update', [eve.key, { username: 'eve2' }], { cookie: rootCookie }), { key: eve.key, username: 'eve2', role: '' })
      assert.deepEqual(await call(host, USERS_API, 'getSettings', [alice.key], { cookie: rootCookie }), { mainServiceId: 'alice-app' })
      assert.equal(await call(host, USERS_API, 'delete', [eve.key], { cookie: rootCookie }), null)
    })

    test('a user promoted to admin gets admin rights (service token of a service they own)', async () => {
      const users = typedUsers(host)
      await users.update(alice.key, { role: 'admin' })
      try {
        const list = await typedUsers(host, 'Bearer ' + aliceToken).list()
        assert.ok(list.users.length >= 2)
      } finally {
        await users.update(alice.key, { role: '' })
      }
      const e = await rpcError(typedUsers(host, 'Bearer ' + aliceToken).list())
      assert.equal(e.message, 'Not authorized')
    })
  })

  test('a role change applies at once to existing sessions; a rename keeps them (whoami shows the new name)', async () => {
    const users = typedUsers(host)
    const p = pw()
    const hank = await users.create({ username: 'hank', password: p })
    const cookie = await loginOk(host, 'hank', p)
    const list = () => gateway(host, USERS_API, 'list', [], { cookie })
    assert.equal((await list()).json?.error?.message, 'Not authorized')
    await users.update(hank.key, { role: 'admin' })
    assert.ok((await list()).json?.result?.users, 'promoted: the existing cookie should act as admin')
    await users.update(hank.key, { role: '' })
    assert.deepEqual((await list()).json?.error, { code: -32003, message: 'Not authorized' }, 'demoted: the existing cookie must lose admin rights at once')
    // renaming (also to another case of the same name) is not a conflict with oneself
    assert.equal((await users.update(hank.key, { username: 'Hank' })).username, 'Hank')
    assert.equal((await users.update(hank.key, { username: 'henry' })).username, 'henry')
    assert.deepEqual(await whoami(host, { cookie }), { isActive: true, username: 'henry' })
    await users.delete(hank.key)
  })

  test('/_atek/setup is closed once users exist, even when they were made through users-api', async () => {
    const line = host.hostOutput().split('\n').find((l) => l.includes('/_atek/setup?token='))
    assert.ok(line, 'the host printed a setup link when it started without users')
    const token = /token=([^\s)]+)/.exec(line)[1]
    const r = await req(host, { method: 'POST', path: '/_atek/setup', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, username: 'late', password: pw() }) })
    assert.equal(r.status, 403, r.text)
    assert.equal(r.json?.error, true)
    assert.ok(!(await typedUsers(host).list()).users.some((u) => u.username === 'late'))
  })

  test('passwords never leave the host: replies, the server database (argon2id), host output', async () => {
    for (const [i, text] of replies.entries()) assertNoSecrets(text, `reply #${i}`)
    const rows = await serverRows(host, 'atek.cloud/user')
    assert.ok(rows.length >= 2, 'each account is a row of atek.cloud/user')
    for (const row of rows) assert.match(row.passwordHash, /^\$argon2id\$/, 'accounts hold argon2id PHC strings')
    const stored = storedBytes(host)
    for (const p of passwords) assert.ok(!stored.includes(p), 'the database holds a clear-text password')
    const out = host.hostOutput()
    for (const p of passwords) assert.ok(!out.includes(p), 'host output contains a clear-text password')
  })

  describe('defaultMainService', () => {
    let h2
    after(async () => { await h2?.cleanup() }, { timeout: 60000 })

    test('create() installs the default main service for the new user and stores its id', { timeout: 120000 }, async () => {
      h2 = h2Ref = await startHost({ config: { defaultMainService: fixtureUrl('sub-echo') } })
      const p = randomPassword()
      const gina = await typedUsers(h2).create({ username: 'gina', password: p })
      const settings = await waitFor(async () => {
        const s = await typedUsers(h2).getSettings(gina.key)
        return s.mainServiceId ? s : null
      }, { timeout: 60000, interval: 200, message: 'settings.mainServiceId of the new user' })
      const info = await waitFor(async () => {
        const i = await getService(h2, settings.mainServiceId)
        return i.status === 'active' ? i : null
      }, { timeout: 60000, interval: 200, message: `${settings.mainServiceId} active` })
      assert.equal(info.settings.owningUserKey, gina.key)
      assert.equal(info.settings.sourceUrl, fixtureUrl('sub-echo'))
      // the main domain now shows that service to gina
      const cookie = await loginOk(h2, 'gina', p)
      const page = await req(h2, { path: '/', cookie })
      assert.equal(page.status, 200, page.text.slice(0, 200))
      assert.equal(page.json?.serviceKey, info.key, `GET / for gina: ${page.text.slice(0, 200)}`)
    })
  })
})
