// atek.cloud/adb-api through the original client `@atek-cloud/adb-api` 2.0.0 (reference §5):
// db(), defineSchema() with pkey and jsonSchema, list/get/create/put/delete, against the
// host's built-in ADB through its gateway; the permission rules with two users' services;
// tables kept by the database (our extension); data that survives a restart.
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'

import { AdbDatabase, createClient, defineSchema } from '@atek-cloud/adb-api'

import {
  startHost, fixtureUrl, install, getService, procEnv, rpcError, testWithHost, removeTempDirs,
  makeEchoPackage
} from './lib/host.mjs'
import { createUser, randomPassword } from './lib/users.mjs'

let host
const test = testWithHost(() => host)
const tokens = {} // alice, bob: the bearer tokens of services they own

/** The original client, as an app with `token` would have it. */
function api (token, on = host) {
  const c = createClient()
  c.$setEndpoint({ proto: 'http', hostname: '127.0.0.1', port: on.port })
  c.$setAuthHeader('Bearer ' + token)
  return c
}
const db = (token, idOrAlias, opts, on = host) => new AdbDatabase(api(token, on), idOrAlias, opts)

const notes = defineSchema('example.com/notes', {
  pkey: '/id',
  jsonSchema: {
    type: 'object',
    required: ['id', 'text'],
    properties: { id: { type: 'string' }, text: { type: 'string' }, createdAt: { type: 'string' } }
  }
})

describe('adb-api', () => {
  before(async () => {
    host = await startHost()
    for (const name of ['alice', 'bob']) {
      await createUser(host, { username: name, password: randomPassword(), role: '' })
      const info = await install(host, { id: `${name}-app`, sourceUrl: fixtureUrl('sub-echo'), user: name })
      assert.equal(info.status, 'active', JSON.stringify(info))
      tokens[name] = procEnv((await getService(host, `${name}-app`)).pid).ATEK_HOST_BEARER_TOKEN
    }
  }, { timeout: 120000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  let mainId
  test('db(alias) and defineSchema(): create, get, list, put, delete with the original client', async () => {
    const main = db(tokens.alice, 'main')
    const info = await main.describe()
    assert.match(info.dbId, /^[0-9a-f]{64}$/)
    assert.equal(info.writable, true)
    assert.equal(info.alias, 'main')
    mainId = info.dbId
    // The same alias from the same service is the same database.
    assert.equal((await db(tokens.alice, 'main').describe()).dbId, mainId)

    const t = notes(main)
    const created = await t.create({ id: 'n1', text: 'hello' })
    assert.equal(created.key, 'n1')
    assert.equal(created.path, '/example.com/notes/n1')
    assert.equal(created.url, `hyper://${mainId}/example.com/notes/n1`)
    assert.equal(typeof created.value.createdAt, 'string', 'the client adds createdAt')

    const got = await t.get('n1')
    assert.equal(got.value.text, 'hello')
    assert.equal(got.valid, true)
    assert.equal(got.url, created.url)

    await t.put('n2', { id: 'n2', text: 'second' })
    await t.put('n3', { id: 'n3', text: 'third' })
    const keys = (res) => res.records.map((r) => r.key)
    assert.deepEqual(keys(await t.list()), ['n1', 'n2', 'n3'])
    assert.deepEqual(keys(await t.list({ reverse: true, limit: 2 })), ['n3', 'n2'])
    assert.deepEqual(keys(await t.list({ gt: 'n1', lte: 'n2' })), ['n2'])

    // The database itself: recursive listing keys are relative paths; paths as strings.
    const all = await main.list('/')
    assert.deepEqual(all.records.map((r) => r.key), ['example.com/notes/n1', 'example.com/notes/n2', 'example.com/notes/n3'])
    assert.equal((await main.get('/example.com/notes/n2')).value.text, 'second')
    assert.equal(typeof all.records[0].seq, 'number')

    await t.delete('n1')
    const e = await rpcError(t.get('n1'))
    assert.equal(e.message, 'Not found: example.com,notes,n1')
    assert.deepEqual(keys(await t.list()), ['n2', 'n3'])

    // Records are objects; a bad path is a clear error.
    const notObject = await rpcError(main.put('/example.com/notes/x', [1, 2]))
    assert.match(notObject.message, /JSON object/)
    const badPath = await rpcError(main.put(['a/b'], {}))
    assert.match(badPath.message, /may not contain/)
  })

  test('dbCreate without an alias, dbList and dbGetConfig', async () => {
    const fresh = db(tokens.alice)
    const info = await fresh.describe()
    assert.notEqual(info.dbId, mainId)
    const mine = await api(tokens.alice).dbList()
    assert.deepEqual(mine.map((d) => d.dbId).sort(), [mainId, info.dbId].sort())
    assert.deepEqual(await api(tokens.alice).dbGetConfig('main'), { alias: 'main', access: 'public' })
    assert.deepEqual(await api(tokens.bob).dbList(), [])
  })

  test('a public database is readable by every caller and writable only by its owner', async () => {
    const bobsView = db(tokens.bob, mainId)
    assert.equal((await bobsView.get('/example.com/notes/n2')).value.text, 'second')
    const e = await rpcError(bobsView.put('/example.com/notes/n9', { id: 'n9', text: 'bob was here' }))
    assert.equal(e.message, 'Not authorized')
    const d = await rpcError(bobsView.delete('/example.com/notes/n2'))
    assert.equal(d.message, 'Not authorized')
    assert.equal((await db(tokens.alice, mainId).get('/example.com/notes/n2')).value.text, 'second')
    // Bob's "main" is his own database.
    const bobMain = await db(tokens.bob, 'main').describe()
    assert.notEqual(bobMain.dbId, mainId)
  })

  test('a private database is its owner\'s alone', async () => {
    const secret = db(tokens.alice, 'secret', { access: 'private' })
    await secret.put('/diary/1', { text: 'dear diary' })
    const { dbId } = await secret.describe()
    for (const call of [
      () => db(tokens.bob, dbId).get('/diary/1'),
      () => db(tokens.bob, dbId).list('/'),
      () => db(tokens.bob, dbId).describe()
    ]) {
      assert.equal((await rpcError(call())).message, 'Not authorized')
    }
    // The system token (the host, the CLI) may read it.
    assert.equal((await db(host.token, dbId).get('/diary/1')).value.text, 'dear diary')
  })

  test('tables kept by the database: schema enforced on write with the failing place, revisions, index queries', async () => {
    const a = api(tokens.alice)
    const def = {
      id: 'example.com/tasks',
      revision: 1,
      jsonSchema: {
        type: 'object',
        required: ['title', 'priority'],
        properties: { title: { type: 'string' }, priority: { type: 'integer' } }
      },
      indexes: [{ name: 'priority', path: '/priority' }]
    }
    const first = await a.$rpc('tableDefine', [mainId, def])
    assert.equal(first.written, true)
    // Defining it again, as an app does at every start, writes nothing.
    assert.deepEqual(await a.$rpc('tableDefine', [mainId, def]), { written: false, revision: 1 })
    // A changed definition needs a greater revision.
    const same = await rpcError(a.$rpc('tableDefine', [mainId, { ...def, indexes: [] }]))
    assert.match(same.message, /greater revision/)
    assert.deepEqual((await a.$rpc('tableGet', [mainId, 'example.com/tasks'])).indexes, def.indexes)

    const tasks = db(tokens.alice, mainId)
    await tasks.put('/example.com/tasks/t1', { title: 'a', priority: 3 })
    await tasks.put('/example.com/tasks/t2', { title: 'b', priority: 1 })
    await tasks.put('/example.com/tasks/t3', { title: 'c', priority: 2 })
    const bad = await rpcError(tasks.put('/example.com/tasks/t4', { title: 'd', priority: 'high' }))
    assert.match(bad.message, /example\.com\/tasks/)
    assert.match(bad.message, /"\/priority"/, 'the error names the failing place')
    assert.equal((await rpcError(tasks.get('/example.com/tasks/t4'))).message, 'Not found: example.com,tasks,t4')

    const byPriority = await a.$rpc('recordQuery', [mainId, 'example.com/tasks', { index: 'priority' }])
    assert.deepEqual(byPriority.records.map((r) => r.key), ['t2', 't3', 't1'])
    const top = await a.$rpc('recordQuery', [mainId, 'example.com/tasks', { index: 'priority', gte: 2, reverse: true, limit: 1 }])
    assert.deepEqual(top.records.map((r) => r.key), ['t1'])
    const listed = await tasks.list('/example.com/tasks')
    assert.ok(listed.records.every((r) => r.valid === true), JSON.stringify(listed.records))
    // Another user's service may read the public database's tables but not define one.
    assert.equal((await api(tokens.bob).$rpc('tableList', [mainId])).tables.length, 1)
    assert.equal((await rpcError(api(tokens.bob).$rpc('tableDefine', [mainId, { ...def, revision: 2 }]))).message, 'Not authorized')
  })

  test('recordChanges: the changes after a log index, then waiting for the next one', async () => {
    const a = api(tokens.alice)
    const feed = db(tokens.alice, 'feed')
    const { dbId } = await feed.describe()
    await feed.put('/a/1', { n: 1 })
    await feed.delete('/a/1')
    const first = await a.$rpc('recordChanges', [dbId, { since: 0 }])
    assert.deepEqual(first.changes.map((c) => [c.seq, c.type, c.path]), [[0, 'put', '/a/1'], [1, 'delete', '/a/1']])
    assert.deepEqual(first.changes[0].value, { n: 1 })
    assert.equal(first.next, 2)
    // Nothing new: a waiting call answers as soon as a write lands.
    const waiting = a.$rpc('recordChanges', [dbId, { since: first.next, wait: 20000 }])
    await feed.put('/a/2', { n: 2 })
    const next = await waiting
    assert.deepEqual(next.changes.map((c) => [c.seq, c.type, c.path]), [[2, 'put', '/a/2']])
    assert.equal(next.next, 3)
    // With no wait and nothing new, the answer is empty at once.
    assert.deepEqual(await a.$rpc('recordChanges', [dbId, { since: 3 }]), { changes: [], next: 3 })
    // A private database's changes are its owner's alone, as its records are.
    const secret = await db(tokens.alice, 'secret').describe()
    assert.equal((await rpcError(api(tokens.bob).$rpc('recordChanges', [secret.dbId, {}]))).message, 'Not authorized')
  })

  test('the server database is the host\'s', async () => {
    const { serverDbId } = await api(host.token).getConfig()
    assert.match(serverDbId, /^[0-9a-f]{64}$/)
    assert.equal((await rpcError(api(tokens.alice).getConfig())).message, 'Not authorized')
    assert.equal((await rpcError(db(tokens.alice, serverDbId).list('/'))).message, 'Not authorized')
  })

  test('a core service that exports atek.cloud/adb-api replaces the built-in ADB', async () => {
    const other = await startHost({
      coreServices: [{ id: 'my-adb', sourceUrl: makeEchoPackage({ api: 'atek.cloud/adb-api' }) }]
    })
    try {
      // The echo app answers `echo` with its params; the built-in ADB would say Method not found.
      assert.deepEqual(await other.client('atek.cloud/adb-api').echo('hi'), ['hi'])
    } finally {
      await other.cleanup()
    }
  })

  test('everything acknowledged survives SIGKILL of the host, a restart, and a lost view', async () => {
    const first = await startHost()
    let second, third, fourth, fifth
    try {
      const sys = db(first.token, 'durable', undefined, first)
      const { dbId } = await sys.describe()
      const { serverDbId } = await api(first.token, first).getConfig()
      await api(first.token, first).$rpc('tableDefine', [dbId, { id: 'example.com/items', revision: 1, indexes: [{ name: 'n', path: '/n' }] }])
      // Concurrent writes, each acknowledged before the kill.
      await Promise.all(Array.from({ length: 50 }, (_, n) => sys.put(`/example.com/items/i${String(n).padStart(2, '0')}`, { n })))
      await first.stop({ signal: 'SIGKILL' })
      first.killAllSync()
      // serverDbId was written back to config.json on the first start.
      const config = JSON.parse(fs.readFileSync(path.join(first.dir, 'config.json'), 'utf8'))
      assert.equal(config.serverDbId, serverDbId)

      second = await startHost({ configDir: first.dir })
      const again = db(second.token, dbId, undefined, second)
      const listed = await again.list('/example.com/items')
      assert.equal(listed.records.length, 50)
      assert.deepEqual(listed.records.map((r) => r.value.n), Array.from({ length: 50 }, (_, n) => n))
      assert.equal((await api(second.token, second).getConfig()).serverDbId, serverDbId)
      // The alias still names it; the server database still knows its owner.
      assert.equal((await db(second.token, 'durable', undefined, second).describe()).dbId, dbId)
      await second.stop()

      // Views are derived: delete them all and they are rebuilt from the logs, same answers.
      const adbDir = path.join(first.dir, 'adb')
      for (const entry of fs.readdirSync(adbDir, { withFileTypes: true })) {
        if (entry.isDirectory()) fs.rmSync(path.join(adbDir, entry.name, 'view.redb'), { force: true })
      }
      third = await startHost({ configDir: first.dir })
      const rebuilt = await db(third.token, dbId, undefined, third).list('/example.com/items')
      assert.deepEqual(rebuilt.records, listed.records)
      const byN = await api(third.token, third).$rpc('recordQuery', [dbId, 'example.com/items', { index: 'n', gte: 48 }])
      assert.deepEqual(byN.records.map((r) => r.key), ['i48', 'i49'])
      await third.stop()

      // config.json lost serverDbId (replaced, edited by hand): the id kept beside the
      // databases restores it, rather than starting an empty home.
      const cfgPath = path.join(first.dir, 'config.json')
      const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'))
      delete cfg.serverDbId
      fs.writeFileSync(cfgPath, JSON.stringify(cfg))
      fourth = await startHost({ configDir: first.dir })
      assert.equal((await api(fourth.token, fourth).getConfig()).serverDbId, serverDbId)
      assert.equal((await db(fourth.token, dbId, undefined, fourth).list('/example.com/items')).records.length, 50)
      await fourth.stop()

      // A serverDbId that is not this folder's: the host refuses to start, and says why.
      fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, serverDbId: dbId }))
      await assert.rejects(
        async () => { fifth = await startHost({ configDir: first.dir, readyTimeout: 10000 }) },
        (err) => err.message.includes(`serverDbId in config.json (${dbId}) is not this folder's server database (${serverDbId})`) || assert.fail(err.message)
      )
    } finally {
      for (const h of [fifth, fourth, third, second, first]) await h?.cleanup()
    }
  })
})
