// Installing from git: tags as versions, desiredVersion ranges, npm build, update checks
// (reference §9). The repositories are made locally with the git command.
import { describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

import {
  startHost, FIXTURES_DIR, install, getService, servicesClient, rpcError, git, makeTempDir,
  testWithHost, removeTempDirs, waitForService
} from './lib/host.mjs'

const API = 'test.example/version'
const APP_FILES = ['atek.json', 'package.json', 'build.js', 'index.js']

let host
let work // working copy the test commits in
let bare // the bare repository the host installs from
const test = testWithHost(() => host)

/** Commits version.json = {version} and tags it `v{version}`, then pushes to the bare repo. */
function release (version) {
  fs.writeFileSync(path.join(work, 'version.json'), JSON.stringify({ version }) + '\n')
  git(work, 'add', '-A')
  git(work, 'commit', '-q', '-m', `release ${version}`)
  git(work, 'tag', `v${version}`)
  git(work, 'push', '-q', bare, 'main', '--tags')
}

describe('git install and update', () => {
  before(async () => {
    const tmp = makeTempDir('atek-compat-git-')
    bare = path.join(tmp, 'versioned-app.git')
    work = path.join(tmp, 'work')
    fs.mkdirSync(work)
    git(tmp, 'init', '-q', '--bare', bare)
    git(work, 'init', '-q')
    for (const f of APP_FILES) fs.copyFileSync(path.join(FIXTURES_DIR, 'versioned-app', f), path.join(work, f))
    fs.writeFileSync(path.join(work, '.gitignore'), 'built.txt\nnode_modules/\npackage-lock.json\n')
    for (const v of ['1.0.0', '1.1.0', '2.0.0']) release(v)
    host = await startHost()
  }, { timeout: 60000 })

  after(async () => {
    await host?.cleanup()
    removeTempDirs()
  }, { timeout: 60000 })

  test('install git+file:// with desiredVersion ^1: the highest matching tag, built', async () => {
    const sourceUrl = 'git+' + pathToFileURL(bare).href
    const info = await install(host, { id: 'ver', sourceUrl, desiredVersion: '^1' })
    assert.equal(info.status, 'active', JSON.stringify(info))
    assert.equal(info.settings.sourceUrl, sourceUrl)
    assert.equal(info.settings.desiredVersion, '^1')
    assert.equal(info.settings.package.sourceType, 'git')
    assert.equal(info.settings.package.installedVersion, 'v1.1.0')
    assert.equal(info.settings.manifest?.name, 'Versioned App')
    const pkgDir = path.join(host.dir, 'packages', 'ver')
    assert.ok(fs.existsSync(path.join(pkgDir, 'atek.json')), `expected a checkout in ${pkgDir}`)
    assert.equal(fs.readFileSync(path.join(pkgDir, 'built.txt'), 'utf8').trim(), 'built 1.1.0',
      'npm run build must have run in the checkout')
    assert.deepEqual(await host.client(API).version(), { version: '1.1.0', built: 'built 1.1.0' })
  })

  test('checkForPackageUpdates: nothing newer within ^1', async () => {
    assert.deepEqual(await servicesClient(host).checkForPackageUpdates('ver'),
      { hasUpdate: false, installedVersion: 'v1.1.0', latestVersion: 'v1.1.0' })
  })

  test('a new tag v1.2.0: hasUpdate, updatePackage, restart answers the new version', async () => {
    release('1.2.0')
    const svc = servicesClient(host)
    assert.deepEqual(await svc.checkForPackageUpdates('ver'),
      { hasUpdate: true, installedVersion: 'v1.1.0', latestVersion: 'v1.2.0' })
    assert.deepEqual(await svc.updatePackage('ver'), { installedVersion: 'v1.2.0', oldVersion: 'v1.1.0' })
    const updated = await getService(host, 'ver')
    assert.equal(updated.settings.package.installedVersion, 'v1.2.0')
    await svc.restart('ver')
    await waitForService(host, 'ver', (i) => i.status === 'active')
    assert.deepEqual(await host.client(API).version(), { version: '1.2.0', built: 'built 1.2.0' })
    assert.deepEqual(await svc.checkForPackageUpdates('ver'),
      { hasUpdate: false, installedVersion: 'v1.2.0', latestVersion: 'v1.2.0' })
  })

  test('configure() with a new desiredVersion: the next check offers the new major', async () => {
    const svc = servicesClient(host)
    await svc.configure('ver', { desiredVersion: '^2' })
    assert.equal((await getService(host, 'ver')).settings.desiredVersion, '^2')
    assert.deepEqual(await svc.checkForPackageUpdates('ver'),
      { hasUpdate: true, installedVersion: 'v1.2.0', latestVersion: 'v2.0.0' })
    assert.deepEqual(await svc.updatePackage('ver'), { installedVersion: 'v2.0.0', oldVersion: 'v1.2.0' })
    await svc.restart('ver')
    await waitForService(host, 'ver', (i) => i.status === 'active')
    assert.deepEqual(await host.client(API).version(), { version: '2.0.0', built: 'built 2.0.0' })
  })

  test('checkForPackageUpdates on a folder source is an error', async () => {
    const info = await install(host, { id: 'folder-app', sourceUrl: pathToFileURL(path.join(FIXTURES_DIR, 'simple-app')).href })
    try {
      const err = await rpcError(servicesClient(host).checkForPackageUpdates('folder-app'))
      assert.equal(err.code, -32003)
      assert.equal(info.settings.package.sourceType, 'file')
    } finally {
      await servicesClient(host).uninstall('folder-app').catch(() => {})
    }
  })

  test('uninstall of a git service removes its checkout', async () => {
    const pkgDir = path.join(host.dir, 'packages', 'ver')
    await servicesClient(host).uninstall('ver')
    assert.ok(!fs.existsSync(pkgDir), `${pkgDir} should be deleted`)
    const err = await rpcError(host.client(API).version())
    assert.equal(err.code, -32601)
  })

  test('a bare repository path with no desiredVersion installs the highest tag', async () => {
    const info = await install(host, { id: 'ver-bare', sourceUrl: bare })
    try {
      assert.equal(info.status, 'active', JSON.stringify(info))
      assert.equal(info.settings.package.sourceType, 'git')
      assert.equal(info.settings.package.installedVersion, 'v2.0.0')
      assert.deepEqual(await host.client(API).version(), { version: '2.0.0', built: 'built 2.0.0' })
    } finally {
      await servicesClient(host).uninstall('ver-bare').catch(() => {})
    }
  })

  test('no tag matching desiredVersion: the install does not produce a running service', async () => {
    let info
    try {
      info = await install(host, { id: 'ver-none', sourceUrl: 'git+' + pathToFileURL(bare).href, desiredVersion: '^3' })
    } catch (err) {
      assert.equal(typeof err.code, 'number', `expected an RPC error, got ${err.stack}`)
      assert.match(err.message, /\^3|release|tag|version/i, err.message)
      return
    } finally {
      await servicesClient(host).uninstall('ver-none').catch(() => {})
    }
    assert.notEqual(info.status, 'active', JSON.stringify(info))
  })
})
