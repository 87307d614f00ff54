// atek.cloud/services-api and atek.cloud/inspect-api through the original typed clients
// (reference §4.1, §4.2), plus the service log file.
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL, fileURLToPath } from 'node:url'

import { createClient as createServicesClient, ServiceInfo as ServiceInfoClass } from '@atek-cloud/services-api'
import inspectApi, { createClient as createInspectClient } from '@atek-cloud/inspect-api'
import { ajv } from '@atek-cloud/node-rpc'

import {
  startHost, fixtureUrl, install, getService, servicesClient, rpcError, procEnv, pidAlive,
  testWithHost, removeTempDirs, waitFor, waitForService, boundedProxy, makeTempDir
} from './lib/host.mjs'

let host
const test = testWithHost(() => host)
const validateServiceInfo = ajv.compile(ServiceInfoClass.schema)

/** The original typed client, repointed at the test host (as an app would, with $setEndpoint). */
function typedServices (token = host.token) {
  const c = createServicesClient()
  c.$setEndpoint({ proto: 'http', hostname: '127.0.0.1', port: host.port })
  c.$setAuthHeader('Bearer ' + token)
  return boundedProxy(c, 60000, 'atek.cloud/services-api')
}

function assertServiceInfoShape (info, label) {
  assert.ok(validateServiceInfo(info),
    `${label}: does not match the original ServiceInfo schema: ${JSON.stringify(validateServiceInfo.errors)}\n${JSON.stringify(info)}`)
  assert.ok(['starting', 'active', 'failed', 'stopped'].includes(info.status), `${label}: status ${info.status}`)
  assert.equal(typeof info.key, 'string')
  assert.ok(info.key.length > 0)
  assert.equal(typeof info.restarts, 'number')
  assert.equal(typeof info.core, 'boolean')
}

describe('services-api and inspect-api', () => {
  before(async () => {
    host = await startHost()
  }, { timeout: 60000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  describe('inspect-api', () => {
    test('isReady() is true (default export, repointed)', async () => {
      inspectApi.$setEndpoint({ proto: 'http', hostname: '127.0.0.1', port: host.port })
      inspectApi.$setAuthHeader('Bearer ' + host.token)
      assert.equal(await boundedProxy(inspectApi, 10000, 'inspect-api').isReady(), true)
    })

    test('getConfig() returns the persisted config.json', async () => {
      const c = createInspectClient()
      c.$setEndpoint({ proto: 'http', hostname: '127.0.0.1', port: host.port })
      c.$setAuthHeader('Bearer ' + host.token)
      const cfg = await boundedProxy(c, 10000, 'inspect-api').getConfig()
      const onDisk = JSON.parse(fs.readFileSync(path.join(host.dir, 'config.json'), 'utf8'))
      assert.deepEqual(cfg, onDisk)
      assert.deepEqual(cfg.systemAuthTokens, [host.token])
      assert.equal(cfg.bindAddress, '127.0.0.1')
    })
  })

  describe('install, list, get', () => {
    let simple

    test('install(file://) returns an active ServiceInfo', async () => {
      const sourceUrl = fixtureUrl('simple-app')
      simple = await typedServices().install({ sourceUrl })
      host.trackPid(simple?.pid)
      assertServiceInfoShape(simple, 'install result')
      assert.equal(simple.status, 'active', JSON.stringify(simple))
      assert.equal(simple.settings.id, 'simple-app')
      assert.equal(simple.settings.owningUserKey, 'system')
      assert.equal(simple.settings.sourceUrl, sourceUrl)
      assert.equal(simple.settings.package.sourceType, 'file')
      assert.equal(simple.settings.manifest?.name, 'Simple App')
      assert.equal(simple.core, false)
      assert.equal(simple.restarts, 0)
      assert.ok(Number.isInteger(simple.pid) && pidAlive(simple.pid), `pid ${simple.pid} must be a live process`)
    })

    test('list() and get() agree with install()', async () => {
      const { services } = await typedServices().list()
      assert.ok(Array.isArray(services))
      const listed = services.find((s) => s.settings.id === 'simple-app')
      assert.ok(listed, `simple-app not in list: ${JSON.stringify(services)}`)
      services.forEach((s) => assertServiceInfoShape(s, `list entry ${s.settings.id}`))
      const got = await typedServices().get('simple-app')
      assertServiceInfoShape(got, 'get result')
      assert.equal(got.key, simple.key)
      assert.equal(got.pid, simple.pid)
      assert.deepEqual(got.settings, simple.settings)
      assert.deepEqual(listed.settings, simple.settings)
    })

    test('the same source again without id gets a new id: simple-app-2', async () => {
      const second = await install(host, { sourceUrl: fixtureUrl('simple-app') })
      assert.equal(second.settings.id, 'simple-app-2')
      assert.equal(second.status, 'active')
      assert.notEqual(second.key, simple.key)
      await servicesClient(host).uninstall('simple-app-2')
    })

    test('install with an id already in use: -32003 App already exists under the ID', async () => {
      const err = await rpcError(servicesClient(host).install({ sourceUrl: fixtureUrl('simple-app'), id: 'simple-app' }))
      assert.equal(err.code, -32003)
      assert.equal(err.message, 'App already exists under the ID: simple-app')
    })

    test('unknown id: -32003 naming the id, for every method that takes one', async () => {
      const svc = servicesClient(host)
      const calls = {
        get: () => svc.get('no-such-svc'),
        uninstall: () => svc.uninstall('no-such-svc'),
        start: () => svc.start('no-such-svc'),
        stop: () => svc.stop('no-such-svc'),
        restart: () => svc.restart('no-such-svc'),
        configure: () => svc.configure('no-such-svc', { config: { A: '1' } }),
        checkForPackageUpdates: () => svc.checkForPackageUpdates('no-such-svc'),
        updatePackage: () => svc.updatePackage('no-such-svc')
      }
      for (const [name, call] of Object.entries(calls)) {
        const err = await rpcError(call())
        assert.equal(err.code, -32003, `${name}: ${err.message}`)
        assert.match(err.message, /no-such-svc/, `${name}: the message must name the id`)
      }
    })
  })

  describe('logs', () => {
    test('logs/<id>.log has tagged lines, the app output, and not the bearer token', async () => {
      const info = await getService(host, 'simple-app')
      const token = procEnv(info.pid).ATEK_HOST_BEARER_TOKEN
      assert.match(token ?? '', /^[0-9a-f]{64}$/)
      const log = await waitFor(() => {
        const text = host.serviceLog('simple-app')
        return text.includes('simple-app started') && text.includes('bearer token is') ? text : null
      }, { timeout: 5000, message: 'simple-app output in logs/simple-app.log' })
      assert.ok(!log.includes(token), 'the service bearer token must be redacted from the log')
      assert.ok(!log.includes(host.token), 'the system token must not appear in the log')
      assert.match(log, /\[out\][^\n]*simple-app started/)
      assert.match(log, /\[sys\]/)
    })

    test('stderr lines are tagged [err]', async () => {
      // An app that writes to stderr and exits without ever getting ready.
      const dir = makeTempDir('atek-compat-stderr-app-')
      fs.writeFileSync(path.join(dir, 'atek.json'), '{}')
      fs.writeFileSync(path.join(dir, 'index.js'), 'console.error("to stderr"); setTimeout(() => process.exit(1), 50)\n')
      const info = await install(host, { id: 'stderr-app', sourceUrl: pathToFileURL(dir).href })
      try {
        await waitFor(() => /\[err\][^\n]*to stderr/.test(host.serviceLog('stderr-app')),
          { timeout: 5000, message: '[err] line in logs/stderr-app.log' })
        assert.notEqual(info.status, 'active')
      } finally {
        await servicesClient(host).uninstall('stderr-app').catch(() => {})
      }
    })

    test('the host output does not contain the service bearer token either', async () => {
      const info = await getService(host, 'simple-app')
      const token = procEnv(info.pid).ATEK_HOST_BEARER_TOKEN
      assert.ok(!host.hostOutput().includes(token), 'service bearer token found in the host output')
    })
  })

  describe('stop, start, restart, configure, uninstall', () => {
    let key

    before(async () => {
      const info = await install(host, { id: 'auth-b', sourceUrl: fixtureUrl('auth-app-2') })
      assert.equal(info.status, 'active', JSON.stringify(info))
      key = info.key
    })

    test('stop(): status stopped, process gone, API deregistered', async () => {
      const before = await getService(host, 'auth-b')
      assert.equal(await servicesClient(host).stop('auth-b'), null)
      const info = await getService(host, 'auth-b')
      assert.equal(info.status, 'stopped')
      assert.equal(info.pid ?? null, null, 'a stopped service has no pid')
      await waitFor(() => !pidAlive(before.pid), { timeout: 5000, message: `pid ${before.pid} to exit` })
      const err = await rpcError(host.client('test-b.example/api').getKey())
      assert.equal(err.code, -32601)
      assert.equal(err.message, 'No service available which matches {"transport":"rpc","api":"test-b.example/api"}')
    })

    test('start(): active again with the same key, API registered', async () => {
      await servicesClient(host).start('auth-b')
      const info = await waitForService(host, 'auth-b', (i) => i.status === 'active')
      assert.equal(info.key, key)
      assert.ok(pidAlive(info.pid))
      assert.equal(await host.client('test-b.example/api').getKey(), key)
    })

    test('restart(): a new process, same key', async () => {
      const before = await getService(host, 'auth-b')
      await servicesClient(host).restart('auth-b')
      const info = await waitForService(host, 'auth-b', (i) => i.status === 'active' && i.pid !== before.pid)
      assert.equal(info.key, key)
      assert.ok(!pidAlive(before.pid), 'the old process must be gone')
      assert.equal(await host.client('test-b.example/api').getKey(), key)
    })

    test('configure(): config is merged, and applied at the next start', async () => {
      const svc = servicesClient(host)
      await svc.configure('auth-b', { config: { CFG_ONE: '1' } })
      await svc.configure('auth-b', { config: { CFG_TWO: '2' } })
      const info = await getService(host, 'auth-b')
      assert.deepEqual(info.settings.config, { CFG_ONE: '1', CFG_TWO: '2' })
      await svc.restart('auth-b')
      const after = await waitForService(host, 'auth-b', (i) => i.status === 'active' && i.pid)
      const env = procEnv(after.pid)
      assert.equal(env.CFG_ONE, '1')
      assert.equal(env.CFG_TWO, '2')
    })

    test('configure() renaming to an id in use fails and changes nothing', async () => {
      const err = await rpcError(servicesClient(host).configure('auth-b', { id: 'simple-app' }))
      assert.equal(typeof err.message, 'string')
      assert.equal((await getService(host, 'auth-b')).settings.id, 'auth-b')
      const simple = await getService(host, 'simple-app')
      assert.equal(simple.settings.id, 'simple-app')
      assert.equal(simple.status, 'active')
    })

    test('configure() renaming to a free id moves the service', async () => {
      const svc = servicesClient(host)
      await svc.configure('auth-b', { id: 'auth-b-renamed' })
      const renamed = await getService(host, 'auth-b-renamed')
      assert.equal(renamed.settings.id, 'auth-b-renamed')
      assert.equal(renamed.key, key)
      const err = await rpcError(svc.get('auth-b'))
      assert.equal(err.code, -32003)
      await svc.restart('auth-b-renamed')
      await waitForService(host, 'auth-b-renamed', (i) => i.status === 'active')
      assert.equal(await host.client('test-b.example/api').getKey(), key)
    })

    test('uninstall(): gone from list, process gone, API deregistered', async () => {
      const before = await getService(host, 'auth-b-renamed')
      assert.equal(await servicesClient(host).uninstall('auth-b-renamed'), null)
      const { services } = await servicesClient(host).list()
      assert.ok(!services.some((s) => s.settings.id === 'auth-b-renamed'))
      await waitFor(() => !pidAlive(before.pid), { timeout: 5000, message: `pid ${before.pid} to exit` })
      const err = await rpcError(host.client('test-b.example/api').getKey())
      assert.equal(err.code, -32601)
      // the folder of a file:// source is left alone
      assert.ok(fs.existsSync(path.join(fileURLToPath(fixtureUrl('auth-app-2')), 'index.js')))
    })
  })
})
