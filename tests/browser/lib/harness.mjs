// Browser-test harness: Debian's Chromium driven by playwright-core, and a real Atek host
// started by the compatibility tests' harness (tests/compat/lib/host.mjs).
//
// Everything stays on this machine: the host listens on 127.0.0.1 on a port the OS picks,
// Chromium resolves `localhost` and `*.localhost` to loopback itself, and every other host name
// is made unresolvable (--host-resolver-rules), so a stray request fails instead of leaving.

import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { test } from 'node:test'

import { chromium } from 'playwright-core'

export const BROWSER_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const FIXTURES_DIR = path.join(BROWSER_DIR, 'fixtures')
export const ARTIFACTS_DIR = path.join(BROWSER_DIR, 'artifacts')

// The host harness is shared with tests/compat. It imports @atek-cloud/node-rpc, which lives in
// tests/compat/node_modules, so that folder must be installed (`npm ci` there; scripts/test
// does it before these tests).
let hostLib
try {
  hostLib = await import('../../compat/lib/host.mjs')
} catch (err) {
  throw new Error('tests/browser reuses tests/compat/lib/host.mjs, which needs the compat tests\' ' +
    'packages: run `(cd tests/compat && npm ci)` first.\n' + err.message)
}
export const { startHost, install, waitFor, withTimeout, sleep, httpRequest } = hostLib

/** `file://` URL of one of the browser fixtures. */
export function fixtureUrl (name) {
  return pathToFileURL(path.join(FIXTURES_DIR, name)).href
}

/** The Chromium binary: $CHROMIUM, else `chromium` on PATH (Debian: /usr/bin/chromium). */
export const CHROMIUM = process.env.CHROMIUM || findOnPath('chromium') || '/usr/bin/chromium'

function findOnPath (name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const file = path.join(dir || '.', name)
    try {
      fs.accessSync(file, fs.constants.X_OK)
      return file
    } catch {}
  }
  return null
}

/**
 * Launches headless Chromium. Fails (never skips) when it is not installed: the fix is
 * `tests/browser/install-chromium`.
 */
export async function launchChromium () {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}. Install it with tests/browser/install-chromium ` +
      '(Debian/Ubuntu as root: apt-get install chromium), or set CHROMIUM to a Chromium binary.')
  }
  const args = [
    // Offline and quiet: no first-run UI, no component or field-trial downloads, no pings.
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-component-update',
    '--disable-background-networking',
    '--disable-sync',
    '--disable-domain-reliability',
    '--disable-client-side-phishing-detection',
    '--disable-breakpad',
    '--no-pings',
    '--no-proxy-server',
    '--disable-dev-shm-usage',
    // Only loopback names resolve; anything else fails at once.
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.localhost'
  ]
  // Chromium's sandbox refuses to start as root (containers, CI).
  if (typeof process.getuid === 'function' && process.getuid() === 0) args.push('--no-sandbox')
  return withTimeout(chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args,
    timeout: 30000
  }), 45000, `launching ${CHROMIUM}`)
}

/**
 * A new browser context that records every request and navigation, so a failure can show
 * what the browser did, and so a test can check that nothing left loopback.
 */
export async function newContext (browser, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 }, ...opts })
  context.setDefaultTimeout(20000)
  context.setDefaultNavigationTimeout(20000)
  const events = []
  context.atekEvents = events
  const note = (s) => {
    events.push(`${new Date().toISOString().slice(11, 23)} ${s}`)
    if (events.length > 400) events.splice(0, events.length - 400)
  }
  context.on('request', (r) => {
    requestedUrls.push(r.url())
    note(`-> ${r.method()} ${r.url()}`)
  })
  context.on('response', (r) => {
    const loc = r.headers().location
    note(`<- ${r.status()} ${r.url()}${loc ? ` (location: ${loc})` : ''}`)
  })
  context.on('requestfailed', (r) => note(`!! ${r.method()} ${r.url()} failed: ${r.failure()?.errorText}`))
  context.on('page', (page) => {
    page.on('console', (m) => note(`console.${m.type()}: ${m.text()}`))
    page.on('pageerror', (e) => note(`pageerror: ${e.message}`))
  })
  return context
}

/** Every URL any context requested, for the "stayed on loopback" check. */
export const requestedUrls = []

/** True for URLs that stay on this machine. */
export function isLoopbackUrl (u) {
  let url
  try { url = new URL(u) } catch { return false }
  if (url.protocol === 'data:' || url.protocol === 'about:' || url.protocol === 'blob:') return true
  if (url.protocol !== 'http:' && url.protocol !== 'https:' && url.protocol !== 'ws:') return false
  const h = url.hostname
  return h === 'localhost' || h.endsWith('.localhost') || h === '127.0.0.1' || h === '[::1]'
}

export function artifactPath (name) {
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true })
  return path.join(ARTIFACTS_DIR, name)
}

/** Screenshot of `page` into artifacts/NAME.png; returns the path. */
export async function screenshot (page, name, opts = {}) {
  const file = artifactPath(`${name}.png`)
  await page.screenshot({ path: file, ...opts })
  return file
}

/**
 * Polls the text of `locator` until it equals `want` (after trimming); returns it. `failIf()`,
 * when given, is checked first at each poll: a truthy answer stops the wait at once.
 */
export async function waitForText (locator, want, { timeout = 20000, message, failIf } = {}) {
  return waitFor(async () => {
    const stop = failIf && failIf()
    if (stop) throw Object.assign(new Error(String(stop)), { fatal: true })
    const t = (await locator.textContent({ timeout: 1000 }))?.trim()
    if (t === want) return t
    throw new Error(`text is ${JSON.stringify(t)}`)
  }, { timeout, interval: 100, message: message || `text ${JSON.stringify(want)}` })
}

/**
 * `test()` that, on failure, saves a screenshot of every open page, the browser's event log
 * and the hosts' output to artifacts/, and prints their tails.
 * `getState()` returns {hosts, contexts} at failure time.
 */
export function browserTest (getState) {
  return function btest (name, opts, fn) {
    if (typeof opts === 'function') { fn = opts; opts = {} }
    return test(name, { timeout: 120000, ...opts }, async (t) => {
      try {
        await fn(t)
      } catch (err) {
        const slug = name.replace(/[^a-zA-Z0-9._-]+/g, '_').slice(0, 60)
        const { hosts = [], contexts = [] } = getState() || {}
        let report = `\n##### failure in "${name}"\n`
        let n = 0
        for (const ctx of contexts.filter(Boolean)) {
          for (const page of ctx.pages()) {
            n++
            try {
              const file = await withTimeout(screenshot(page, `failure-${slug}-${n}`), 10000, 'screenshot')
              report += `screenshot of ${page.url()}: ${file}\n`
            } catch (e) {
              report += `(no screenshot of ${page.url()}: ${e.message})\n`
            }
          }
          const log = (ctx.atekEvents || []).join('\n')
          fs.writeFileSync(artifactPath(`failure-${slug}-browser-${n}.log`), log + '\n')
          report += `--- browser events (tail) ---\n${log.split('\n').slice(-60).join('\n')}\n`
        }
        for (const h of hosts.filter(Boolean)) {
          try {
            fs.copyFileSync(h.outPath, artifactPath(`failure-${slug}-host${h.id}.out`))
          } catch {}
          report += h.describeFailure(4000)
        }
        console.error(report)
        throw err
      }
    })
  }
}
