// Test harness: starts an Atek host in a temp config dir and talks to it.
//
// Everything is hermetic: a fresh temp dir per host, port 0 (the host reports the port it got
// in run.json), 127.0.0.1 only, bounded waits everywhere, and every process we start is killed
// in cleanup() (and, as a last resort, when the test process exits).

import { spawn, execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { test } from 'node:test'

import { rpc } from '@atek-cloud/node-rpc'

export const COMPAT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const REPO_DIR = path.resolve(COMPAT_DIR, '..', '..')
export const FIXTURES_DIR = path.join(COMPAT_DIR, 'fixtures')
export const ARTIFACTS_DIR = path.join(COMPAT_DIR, 'artifacts')
const TARGET_DIR = process.env.CARGO_TARGET_DIR
  ? path.resolve(REPO_DIR, process.env.CARGO_TARGET_DIR)
  : path.join(REPO_DIR, 'target')

export const ATEK_BIN = process.env.ATEK_BIN || path.join(TARGET_DIR, 'debug', 'atek')
export const ATEK_ECHO_BIN = process.env.ATEK_ECHO_BIN || path.join(TARGET_DIR, 'debug', 'atek-echo-service')

/** `file://` URL of one of our fixture folders. */
export function fixtureUrl (name) {
  return pathToFileURL(path.join(FIXTURES_DIR, name)).href
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Rejects with `label` if `promise` has not settled after `ms`. */
export function withTimeout (promise, ms, label = 'operation') {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${label} did not finish within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * Polls `fn` until it returns a truthy value (exceptions count as "not yet") and returns that
 * value. Throws after `timeout` ms, quoting the last value or error.
 */
export async function waitFor (fn, { timeout = 10000, interval = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  let last
  for (;;) {
    try {
      const remaining = Math.max(1, deadline - Date.now())
      const value = await withTimeout(Promise.resolve().then(fn), remaining, message)
      if (value) return value
      last = `last value: ${safeJson(value)}`
    } catch (err) {
      if (err && err.fatal) throw err
      last = `last error: ${err && err.message}`
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${message} (${last})`)
    }
    await sleep(interval)
  }
}

function safeJson (v) {
  try { return JSON.stringify(v) } catch { return String(v) }
}

/** True while `pid` is a live (not zombie) process. */
export function pidAlive (pid) {
  if (!pid) return false
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // state is the field after the ")" that closes the command name
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch {
    return false
  }
}

/** The environment of a running process (Linux, same user). */
export function procEnv (pid) {
  const raw = fs.readFileSync(`/proc/${pid}/environ`, 'utf8')
  const env = {}
  for (const entry of raw.split('\0')) {
    const i = entry.indexOf('=')
    if (i > 0) env[entry.slice(0, i)] = entry.slice(i + 1)
  }
  return env
}

/**
 * One HTTP request to 127.0.0.1 with a bounded timeout; never reuses connections.
 * Returns {status, headers, text, json} (json is undefined when the body is not JSON).
 */
export function httpRequest ({ port, method = 'GET', path: urlPath = '/', headers = {}, body, timeout = 15000 }) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, agent: false }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json
        try { json = JSON.parse(text) } catch {}
        resolve({ status: res.statusCode, headers: res.headers, text, json })
      })
      res.on('error', reject)
    })
    req.setTimeout(timeout, () => req.destroy(new Error(`HTTP ${method} ${urlPath} timed out after ${timeout} ms`)))
    req.on('error', reject)
    if (body !== undefined) req.write(body)
    req.end()
  })
}

/**
 * Wraps a node-rpc proxy so every call is bounded by `timeout` ms. `$…` members pass through,
 * and the proxy is not thenable (a bare node-rpc proxy would turn `await proxy` into a `then`
 * RPC call).
 */
export function boundedProxy (inner, timeout, apiId) {
  return new Proxy({}, {
    get (_obj, name) {
      if (name === 'then' || typeof name === 'symbol') return undefined
      if (typeof name === 'string' && name.startsWith('$')) return inner[name]
      return (...params) => withTimeout(inner[name](...params), timeout, `${apiId}.${name}()`)
    }
  })
}

const liveHosts = new Set()
process.on('exit', () => {
  // Last resort if an after hook never ran: nothing we started may outlive the test process.
  for (const h of liveHosts) h.killAllSync()
})

let hostCounter = 0

/**
 * Starts a host. Returns {url, port, token, dir, proc, client, rawCall, stop, cleanup, …}.
 *
 * - coreServices: written into config.json.
 * - config: extra config.json fields (override the defaults below).
 * - configDir: reuse an existing config dir (to test a restart); config.json is then left as is.
 */
export async function startHost ({ coreServices = [], config = {}, configDir, readyTimeout = 20000 } = {}) {
  if (!fs.existsSync(ATEK_BIN)) {
    throw new Error(`host binary not found at ${ATEK_BIN}: run \`cargo build --workspace\` or set ATEK_BIN`)
  }
  let dir = configDir
  let token
  if (!dir) {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'atek-compat-'))
    token = crypto.randomBytes(32).toString('hex')
    const cfg = {
      port: 0,
      bindAddress: '127.0.0.1',
      systemAuthTokens: [token],
      coreServices,
      readyTimeout: '3s',
      restartDelay: '100ms',
      ...config
    }
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2))
  } else {
    token = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).systemAuthTokens[0]
  }
  const runJson = path.join(dir, 'run.json')
  fs.rmSync(runJson, { force: true })
  const outPath = path.join(dir, 'host.out')
  const outFd = fs.openSync(outPath, 'a')
  const proc = spawn(ATEK_BIN, ['run', '--config-dir', dir], {
    stdio: ['ignore', outFd, outFd],
    // Own process group, so cleanup can also reach anything the host left behind.
    detached: true,
    env: { ...process.env, RUST_BACKTRACE: '1' }
  })
  fs.closeSync(outFd)
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }))
    proc.on('error', (err) => resolve({ code: null, signal: null, error: err }))
  })
  let exitInfo = null
  exited.then((info) => { exitInfo = info })

  const seenPids = new Set()
  const host = {
    id: ++hostCounter,
    dir,
    token,
    proc,
    pid: proc.pid,
    outPath,
    exited,
    get exitInfo () { return exitInfo },
    port: 0,
    url: '',
    /** Remembers service pids so cleanup() can kill stragglers. */
    trackPid (pid) { if (pid) seenPids.add(pid) },
    hostOutput () {
      try { return fs.readFileSync(outPath, 'utf8') } catch { return '' }
    },
    serviceLog (id) {
      try { return fs.readFileSync(path.join(dir, 'logs', `${id}.log`), 'utf8') } catch { return '' }
    },
    /** A node-rpc proxy for `apiId` pointed at this host, with `token` (default: system token). */
    client (apiId, { token: tok = token, timeout = 60000 } = {}) {
      const c = rpc(apiId)
      c.$setEndpoint({ proto: 'http', hostname: '127.0.0.1', port: host.port })
      c.$setAuthHeader('Bearer ' + tok)
      return boundedProxy(c, timeout, apiId)
    },
    /** POST to the gateway; `body` is an object (JSON-encoded) or a raw string. */
    rawCall (apiId, body, headers = {}, { timeout = 30000 } = {}) {
      const h = { 'content-type': 'application/json', authorization: 'Bearer ' + token }
      for (const [k, v] of Object.entries(headers)) {
        delete h[k.toLowerCase()]
        if (v !== null && v !== undefined) h[k] = v
      }
      return httpRequest({
        port: host.port,
        method: 'POST',
        path: '/_atek/gateway?api=' + encodeURIComponent(apiId),
        headers: h,
        body: typeof body === 'string' ? body : JSON.stringify(body),
        timeout
      })
    },
    /** SIGTERM, then wait (bounded) for exit. Returns {code, signal, elapsed, timedOut}. */
    async stop ({ timeout = 15000, signal = 'SIGTERM' } = {}) {
      const t0 = Date.now()
      if (exitInfo) return { ...exitInfo, elapsed: 0, timedOut: false }
      try { proc.kill(signal) } catch {}
      try {
        const info = await withTimeout(exited, timeout, `host exit after ${signal}`)
        return { ...info, elapsed: Date.now() - t0, timedOut: false }
      } catch {
        try { proc.kill('SIGKILL') } catch {}
        const info = await withTimeout(exited, 5000, 'host exit after SIGKILL').catch(() => ({}))
        return { ...info, elapsed: Date.now() - t0, timedOut: true }
      }
    },
    killAllSync () {
      try { if (!exitInfo) proc.kill('SIGKILL') } catch {}
      try { process.kill(-proc.pid, 'SIGKILL') } catch {}
      for (const pid of seenPids) {
        try { if (pidAlive(pid)) process.kill(pid, 'SIGKILL') } catch {}
      }
    },
    /**
     * For after hooks: collect service pids, stop the host, kill anything left over, then
     * delete the temp dir (kept when ATEK_COMPAT_KEEP=1 or when `keep`).
     */
    async cleanup ({ keep = false } = {}) {
      if (!exitInfo && host.port) {
        try {
          const list = await host.client('atek.cloud/services-api', { timeout: 3000 }).list()
          for (const s of list?.services ?? []) host.trackPid(s.pid)
        } catch {}
      }
      await host.stop({ timeout: 10000 })
      host.killAllSync()
      liveHosts.delete(host)
      if (!keep && !process.env.ATEK_COMPAT_KEEP) {
        await fsp.rm(dir, { recursive: true, force: true }).catch(() => {})
      }
    },
    /** Copies host.out and the service logs to tests/compat/artifacts/ (gitignored). */
    saveArtifacts (label) {
      try {
        const dest = path.join(ARTIFACTS_DIR, `${sanitize(label)}-host${host.id}-${process.pid}`)
        fs.mkdirSync(dest, { recursive: true })
        if (fs.existsSync(outPath)) fs.copyFileSync(outPath, path.join(dest, 'host.out'))
        const logs = path.join(dir, 'logs')
        if (fs.existsSync(logs)) fs.cpSync(logs, path.join(dest, 'logs'), { recursive: true })
        const cfg = path.join(dir, 'config.json')
        if (fs.existsSync(cfg)) fs.copyFileSync(cfg, path.join(dest, 'config.json'))
        return dest
      } catch (err) {
        return `(could not save artifacts: ${err.message})`
      }
    },
    /** Tail of host.out and of every service log, for failure reports. */
    describeFailure (maxChars = 6000) {
      let out = `--- ${outPath} (tail) ---\n${tail(host.hostOutput(), maxChars)}\n`
      const logs = path.join(dir, 'logs')
      try {
        for (const f of fs.readdirSync(logs)) {
          out += `--- logs/${f} (tail) ---\n${tail(fs.readFileSync(path.join(logs, f), 'utf8'), 1500)}\n`
        }
      } catch {}
      if (exitInfo) out += `--- host exited: ${safeJson(exitInfo)} ---\n`
      return out
    }
  }
  liveHosts.add(host)

  try {
    // 1. run.json tells us the port.
    const run = await waitFor(() => {
      if (exitInfo) throw Object.assign(new Error(`host exited early: ${safeJson(exitInfo)}`), { fatal: true })
      const j = JSON.parse(fs.readFileSync(runJson, 'utf8'))
      return j && j.port > 0 && j.pid > 0 ? j : null
    }, { timeout: readyTimeout, interval: 50, message: `${runJson} with a port` })
    host.port = run.port
    host.url = `http://127.0.0.1:${run.port}`
    host.runJson = run
    // 2. inspect-api.isReady() with the system token.
    const inspect = host.client('atek.cloud/inspect-api', { timeout: 3000 })
    await waitFor(async () => {
      if (exitInfo) throw Object.assign(new Error(`host exited early: ${safeJson(exitInfo)}`), { fatal: true })
      return (await inspect.isReady()) === true
    }, { timeout: readyTimeout, interval: 100, message: 'inspect-api.isReady() === true' })
  } catch (err) {
    let report = host.describeFailure()
    const saved = host.saveArtifacts('startHost')
    await host.cleanup()
    report += `(artifacts: ${saved})\n`
    err.message += `\n${report}`
    throw err
  }
  return host
}

function tail (s, n) {
  s = s.replace(/\x1b\[[0-9;]*m/g, '') // no colour codes in reports
  return s.length > n ? '…' + s.slice(-n) : s
}

function sanitize (s) {
  return String(s).replace(/[^a-zA-Z0-9._-]+/g, '_').slice(0, 80)
}

/**
 * `test()` that, when the body fails, prints the tails of the hosts' output and logs and saves
 * them to artifacts/. `getHosts` returns the hosts in use (evaluated at failure time).
 */
export function testWithHost (getHosts) {
  return function hostTest (name, opts, fn) {
    if (typeof opts === 'function') { fn = opts; opts = {} }
    return test(name, { timeout: 60000, ...opts }, async (t) => {
      try {
        await fn(t)
      } catch (err) {
        const hosts = [].concat(getHosts() || []).filter(Boolean)
        let report = ''
        for (const h of hosts) {
          const saved = h.saveArtifacts(name)
          report += `${h.describeFailure()}(artifacts: ${saved})\n`
        }
        if (report) {
          console.error(`\n##### failure in "${name}"\n${report}`)
        }
        throw err
      }
    })
  }
}

/** Calls `fn` (expected to reject with a node-rpc RpcError) and returns the error. */
export async function rpcError (promise) {
  try {
    const value = await promise
    throw Object.assign(new Error(`expected an RPC error, got result ${safeJson(value)}`), { notRpc: true })
  } catch (err) {
    if (err.notRpc) throw err
    if (typeof err.code !== 'number') {
      throw new Error(`expected an RPC error with a numeric code, got: ${err.stack || err}`)
    }
    return err
  }
}

/**
 * Writes an exec-runtime package for the Rust echo service into a new temp dir and returns its
 * `file://` URL. `api` is the exported API id; `extra` is merged into atek.json.
 */
export function makeEchoPackage ({ api = 'test.example/echo', path: apiPath = '/rpc', extra = {} } = {}) {
  if (!fs.existsSync(ATEK_ECHO_BIN)) {
    throw new Error(`echo service binary not found at ${ATEK_ECHO_BIN}: run \`cargo build --workspace\` or set ATEK_ECHO_BIN`)
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atek-compat-echo-'))
  tempDirs.add(dir)
  const manifest = {
    name: 'echo',
    runtime: 'exec',
    exec: [ATEK_ECHO_BIN],
    exports: [{ api, path: apiPath }],
    ...extra
  }
  fs.writeFileSync(path.join(dir, 'atek.json'), JSON.stringify(manifest, null, 2))
  return pathToFileURL(dir).href
}

const tempDirs = new Set()

/** A temp dir removed by removeTempDirs(). */
export function makeTempDir (prefix = 'atek-compat-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  tempDirs.add(dir)
  return dir
}

export function removeTempDirs () {
  if (process.env.ATEK_COMPAT_KEEP) return
  for (const d of tempDirs) {
    try { fs.rmSync(d, { recursive: true, force: true }) } catch {}
  }
  tempDirs.clear()
}

/** Runs git with a fixed identity and no user/system config; bounded. */
export function git (cwd, ...args) {
  return execFileSync('git', ['-c', 'init.defaultBranch=main', '-c', 'commit.gpgsign=false', '-c', 'tag.gpgsign=false', ...args], {
    cwd,
    timeout: 30000,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      HOME: cwd,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_AUTHOR_NAME: 'Atek Compat',
      GIT_AUTHOR_EMAIL: 'compat@example.invalid',
      GIT_COMMITTER_NAME: 'Atek Compat',
      GIT_COMMITTER_EMAIL: 'compat@example.invalid',
      GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z',
      GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z'
    }
  })
}

/** The services-api client (bounded), pointed at `host` with `token` (default: system). */
export function servicesClient (host, opts) {
  return host.client('atek.cloud/services-api', opts)
}

/** `get(id)` that remembers the pid for cleanup. */
export async function getService (host, id) {
  const info = await servicesClient(host).get(id)
  host.trackPid(info?.pid)
  return info
}

/** install() that remembers the pid for cleanup. */
export async function install (host, opts, { timeout = 90000 } = {}) {
  const info = await servicesClient(host, { timeout }).install(opts)
  host.trackPid(info?.pid)
  return info
}

/** Polls get(id) until `pred(info)` holds. */
export function waitForService (host, id, pred, { timeout = 10000, message } = {}) {
  return waitFor(async () => {
    const info = await getService(host, id)
    return pred(info) ? info : null
  }, { timeout, interval: 50, message: message || `service ${id} to reach the expected state` })
}

/** Every byte the host keeps in its databases (adb/: logs, views, keys), as one latin1 string. */
export function storedBytes (host) {
  const parts = []
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(p)
      else parts.push(fs.readFileSync(p).toString('latin1'))
    }
  }
  walk(path.join(host.dir, 'adb'))
  return parts.join('\n')
}

/** The rows of one of the host's tables in its server database (`atek.cloud/user`, …), read with the system token. */
export async function serverRows (host, table) {
  const adb = host.client('atek.cloud/adb-api')
  const { serverDbId } = await adb.getConfig()
  const { records } = await adb.recordList(serverDbId, table)
  return records.map((r) => r.value.item)
}

/**
 * POST to the host (port `port`) with a streamed (chunked) body of `size` random bytes, sent
 * `chunk` bytes at a time, `gapMs` apart (0: as fast as the socket takes them). `headers` are
 * added to the request (Host, cookie or authorization). Resolves {status, text, json (when
 * the reply is JSON), sha256 (of what was sent), elapsed (ms)}.
 */
export function streamUpload ({ port, headers, size, path: p = '/upload', chunk = 64 * 1024, gapMs = 0, timeout = 60000 }) {
  return withTimeout(new Promise((resolve, reject) => {
    const t0 = Date.now()
    const hash = crypto.createHash('sha256')
    const r = http.request({
      host: '127.0.0.1', port, method: 'POST', path: p, agent: false,
      headers: { 'content-type': 'application/octet-stream', ...headers }
    }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json
        try { json = JSON.parse(text) } catch {}
        resolve({ status: res.statusCode, text, json, sha256: hash.digest('hex'), elapsed: Date.now() - t0 })
      })
      res.on('error', reject)
    })
    r.on('error', reject)
    let sent = 0
    const write = async () => {
      while (sent < size) {
        const n = Math.min(chunk, size - sent)
        const buf = crypto.randomBytes(n)
        hash.update(buf)
        sent += n
        if (gapMs > 0) {
          r.write(buf)
          await sleep(gapMs)
        } else if (!r.write(buf)) {
          return r.once('drain', () => write().catch(reject))
        }
      }
      r.end()
    }
    write().catch(reject)
  }), timeout, `upload of ${size} bytes`)
}
