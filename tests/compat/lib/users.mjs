// Helpers for the users / sessions / subdomain compat tests (reference §3.6, §4.3, §4.4, §7, §8).
//
// Every request goes to 127.0.0.1 on the host's port; names such as `localhost:PORT` or
// `app.localhost:PORT` only ever appear in the Host header (plain http) or, for
// node-fetch-cookies, in URLs resolved by `loopbackAgent`, which connects to 127.0.0.1 whatever
// the name is.
import http from 'node:http'
import crypto from 'node:crypto'

import { createClient as createUsersClient } from '@atek-cloud/users-api'
import { createClient as createSessionsClient } from '@atek-cloud/user-sessions-api'
import { fetch as cookieFetch, CookieJar } from '@atek-cloud/node-fetch-cookies'

import { boundedProxy, httpRequest, sleep, withTimeout } from './host.mjs'

export const USERS_API = 'atek.cloud/users-api'
export const SESSIONS_API = 'atek.cloud/user-sessions-api'
export const SERVICES_API = 'atek.cloud/services-api'

/** Host header / origin of the main domain and of an app's subdomain (domain `localhost`). */
export const mainHost = (host, domain = 'localhost') => `${domain}:${host.port}`
export const appHost = (host, id, domain = 'localhost') => `${id}.${domain}:${host.port}`
export const mainOrigin = (host, domain = 'localhost') => `http://${mainHost(host, domain)}`
export const appOrigin = (host, id, domain = 'localhost') => `http://${appHost(host, id, domain)}`

/** The original typed users-api client, repointed at the host, with `auth` as Authorization. */
export function typedUsers (host, auth = 'Bearer ' + host.token) {
  const c = createUsersClient()
  c.$setEndpoint({ proto: 'http', hostname: '127.0.0.1', port: host.port })
  if (auth !== undefined) c.$setAuthHeader(auth)
  return boundedProxy(c, 30000, USERS_API)
}

/**
 * The original typed user-sessions-api client. `auth` undefined keeps node-rpc's default header
 * (`Bearer ${ATEK_HOST_BEARER_TOKEN}`, i.e. `Bearer undefined` in the test process).
 */
export function typedSessions (host, auth) {
  const c = createSessionsClient()
  c.$setEndpoint({ proto: 'http', hostname: '127.0.0.1', port: host.port })
  if (auth !== undefined) c.$setAuthHeader(auth)
  return boundedProxy(c, 30000, SESSIONS_API)
}

/** Creates a user with the system token (admin). Returns the User. */
export async function createUser (host, { username, password, role }) {
  const u = { username, password }
  if (role !== undefined) u.role = role
  return typedUsers(host).create(u)
}

/** Parses one Set-Cookie header value: {name, value, attrs} with lower-cased attribute names. */
export function parseSetCookie (line) {
  const parts = line.split(';').map((s) => s.trim()).filter(Boolean)
  const first = parts.shift()
  const eq = first.indexOf('=')
  const attrs = {}
  for (const p of parts) {
    const i = p.indexOf('=')
    if (i < 0) attrs[p.toLowerCase()] = true
    else attrs[p.slice(0, i).trim().toLowerCase()] = p.slice(i + 1).trim()
  }
  return { name: first.slice(0, eq).trim(), value: first.slice(eq + 1).trim(), attrs, raw: line }
}

/** All Set-Cookie headers of a response, parsed. */
export function setCookies (res) {
  const h = res.headers['set-cookie']
  return (Array.isArray(h) ? h : h ? [h] : []).map(parseSetCookie)
}

/** The parsed `session` Set-Cookie of a response, or undefined. */
export function sessionSetCookie (res) {
  return setCookies(res).find((c) => c.name === 'session')
}

/**
 * One JSON-RPC call through the gateway with plain http. No Authorization unless `bearer`;
 * `cookie` is the session token (sent as `session=...`) or a full Cookie header when it contains
 * `=`. Returns the httpRequest result ({status, headers, text, json}).
 */
export function gateway (host, apiId, method, params = [], { cookie, bearer, headers = {}, hostHeader, id = 1 } = {}) {
  const h = { 'content-type': 'application/json', host: hostHeader || mainHost(host) }
  if (bearer) h.authorization = 'Bearer ' + bearer
  if (cookie !== undefined && cookie !== null) h.cookie = cookie.includes('=') ? cookie : `session=${cookie}`
  Object.assign(h, headers)
  return httpRequest({
    port: host.port,
    method: 'POST',
    path: '/_atek/gateway?api=' + encodeURIComponent(apiId),
    headers: h,
    body: JSON.stringify({ jsonrpc: '2.0', id, method, params })
  })
}

/** Like gateway(), but returns the JSON-RPC result, throwing (with the whole reply) otherwise. */
export async function call (host, apiId, method, params, opts) {
  const r = await gateway(host, apiId, method, params, opts)
  if (r.status !== 200 || !r.json || !('result' in r.json)) {
    throw new Error(`${apiId}.${method} failed: HTTP ${r.status} ${r.text.slice(0, 500)}`)
  }
  return r.json.result
}

// Logins are spaced per host so the tests that are not about the rate limit stay well under
// "10 attempts per second per address" (all test traffic comes from 127.0.0.1).
const lastLogin = new Map()
export async function paceLogin (host, gapMs = 150) {
  for (;;) {
    const last = lastLogin.get(host) || 0
    const wait = last + gapMs - Date.now()
    if (wait <= 0) break
    await sleep(wait)
  }
  lastLogin.set(host, Date.now())
}

/**
 * user-sessions-api.login with plain http on the main domain (or `hostHeader`). Returns
 * {res, result, error, cookie (token or undefined), setCookie (parsed or undefined)}.
 */
export async function login (host, username, password, { hostHeader, headers = {}, pace = true } = {}) {
  if (pace) await paceLogin(host)
  const res = await gateway(host, SESSIONS_API, 'login', [{ username, password }], { hostHeader, headers })
  const sc = sessionSetCookie(res)
  return { res, result: res.json?.result, error: res.json?.error, cookie: sc?.value || undefined, setCookie: sc }
}

/** login() that must succeed; returns the session token. */
export async function loginOk (host, username, password, opts) {
  const r = await login(host, username, password, opts)
  if (r.res.status !== 200 || !r.result || !r.cookie) {
    throw new Error(`login(${username}) failed: HTTP ${r.res.status} ${r.res.text.slice(0, 300)} set-cookie=${JSON.stringify(r.res.headers['set-cookie'])}`)
  }
  return r.cookie
}

/** whoami() on the main domain (or hostHeader) with a cookie and/or bearer; returns the raw reply. */
export function whoamiRaw (host, opts = {}) {
  return gateway(host, SESSIONS_API, 'whoami', [], opts)
}

/** whoami() result; throws unless HTTP 200 with a JSON-RPC result. */
export async function whoami (host, opts = {}) {
  return call(host, SESSIONS_API, 'whoami', [], opts)
}

/** A plain GET/any request with a Host header; cookie as in gateway(). */
export function req (host, { method = 'GET', path = '/', hostHeader, cookie, bearer, headers = {}, body, timeout } = {}) {
  const h = { host: hostHeader || mainHost(host) }
  if (bearer) h.authorization = 'Bearer ' + bearer
  if (cookie !== undefined && cookie !== null) h.cookie = cookie.includes('=') ? cookie : `session=${cookie}`
  Object.assign(h, headers)
  return httpRequest({ port: host.port, method, path, headers: h, body, timeout })
}

/** Resolves a Location header against the URL it came from. */
export function resolveLocation (location, base) {
  return new URL(location, base).href
}

/** The app's own session cookie on its subdomain, and the bind nonce cookie set there. */
export const APP_COOKIE = 'atek-session'
export const BIND_COOKIE = 'atek-bind'

/** The parsed `atek-session` Set-Cookie of a response, or undefined. */
export function appSetCookie (res) {
  return setCookies(res).find((c) => c.name === APP_COOKIE)
}

/**
 * The first two steps of the bind-session flow for `appId` with plain http: an unauthenticated
 * GET on the app's subdomain (which sets the `atek-bind` nonce cookie there and redirects to
 * bind-session), then bind-session with the main-domain session token. Returns {bst, nonce,
 * bindCookie (`atek-bind=…`), bindUrl, bstUrl (URL)}.
 */
export async function mintBst (host, mainCookie, appId, path = '/', { domain = 'localhost' } = {}) {
  const r0 = await req(host, { hostHeader: appHost(host, appId, domain), path })
  if (r0.status !== 302) throw new Error(`GET ${appId}${path}: expected 302, got ${r0.status} ${r0.text.slice(0, 300)}`)
  const bind = setCookies(r0).find((c) => c.name === BIND_COOKIE)
  if (!bind?.value) throw new Error(`GET ${appId}${path}: no ${BIND_COOKIE} cookie: ${JSON.stringify(r0.headers['set-cookie'])}`)
  const bindUrl = new URL(resolveLocation(r0.headers.location, `http://${appHost(host, appId, domain)}${path}`))
  const r1 = await req(host, { path: bindUrl.pathname + bindUrl.search, cookie: mainCookie, hostHeader: bindUrl.host })
  if (r1.status !== 302) throw new Error(`bind-session for ${appId}: expected 302, got ${r1.status} ${r1.text.slice(0, 300)}`)
  const bstUrl = new URL(resolveLocation(r1.headers.location, bindUrl.href))
  if (bstUrl.host !== appHost(host, appId, domain) || !bstUrl.searchParams.get('bst')) {
    throw new Error(`bind-session for ${appId}: unexpected Location ${r1.headers.location}`)
  }
  return { bst: bstUrl.searchParams.get('bst'), nonce: bind.value, bindCookie: `${BIND_COOKIE}=${bind.value}`, bindUrl, bstUrl }
}

/**
 * The whole bind-session flow for an app with plain http, given a main-domain session token.
 * Returns {token, cookie (`atek-session=…`, a Cookie header for the app), setCookie, bst,
 * location (the final redirect)}.
 */
export async function bindApp (host, mainCookie, appId, path = '/', { domain = 'localhost' } = {}) {
  const { bst, bindCookie, bstUrl } = await mintBst(host, mainCookie, appId, path, { domain })
  const r2 = await req(host, { path: bstUrl.pathname + bstUrl.search, hostHeader: bstUrl.host, cookie: bindCookie })
  const sc = appSetCookie(r2)
  if (r2.status !== 302 || !sc?.value) {
    throw new Error(`bst on ${appId}: expected 302 with an ${APP_COOKIE} cookie, got ${r2.status} set-cookie=${JSON.stringify(r2.headers['set-cookie'])} ${r2.text.slice(0, 300)}`)
  }
  return { token: sc.value, cookie: `${APP_COOKIE}=${sc.value}`, setCookie: sc, bstUrl: bstUrl.href, bst, location: resolveLocation(r2.headers.location, bstUrl.href) }
}

/** An http.Agent that connects to 127.0.0.1 whatever host name the URL has. */
export function loopbackAgent () {
  return new http.Agent({
    keepAlive: false,
    lookup (hostname, options, cb) {
      if (typeof options === 'function') { cb = options; options = {} }
      if (options && options.all) cb(null, [{ address: '127.0.0.1', family: 4 }])
      else cb(null, '127.0.0.1', 4)
    }
  })
}

/**
 * node-fetch-cookies' CookieJar, made to behave like Chromium for `*.localhost`: node-fetch-cookies
 * sends `Secure` cookies over http only to the exact name `localhost`, while browsers treat every
 * `*.localhost` origin as potentially trustworthy (the spec relies on that for app subdomains).
 */
export class BrowserJar extends CookieJar {
  * cookiesValidForRequest (requestURL) {
    const u = new URL(requestURL)
    if (u.protocol === 'http:' && (u.hostname === 'localhost' || u.hostname.endsWith('.localhost'))) u.protocol = 'https:'
    yield * super.cookiesValidForRequest(u.href)
  }

  /**
   * As in browsers, a cookie set with Max-Age=0 (or a past Expires) is dropped at once. And
   * `Partitioned` (CHIPS, which the host puts on apps' cookies on localhost) is understood:
   * node-fetch-cookies 2.0.4 rejects the whole cookie for that unknown attribute, while a
   * browser visiting the app as the top-level site keeps it as an ordinary cookie.
   */
  addCookie (cookie, fromURL) {
    if (typeof cookie === 'string') cookie = cookie.split('; ').filter((p) => p.toLowerCase() !== 'partitioned').join('; ')
    const added = super.addCookie(cookie, fromURL)
    for (const byName of this.cookies.values()) {
      for (const [name, c] of byName) if (c.expiry && c.expiry.getTime() <= Date.now()) byName.delete(name)
    }
    return added
  }

  /** The value of cookie `name` stored for exactly `domain`, or undefined. */
  get (domain, name = 'session') {
    for (const c of this.cookiesDomain(domain)) if (c.name === name && !c.hasExpired(false)) return c.value
    return undefined
  }
}

/**
 * node-fetch-cookies' fetch, following redirects by hand (at most `maxHops`) so the chain can be
 * inspected. Returns {res, hops: [{url, status, location}], url (final)}.
 */
export async function browserFetch (jar, url, { maxHops = 8, agent, ...options } = {}) {
  const hops = []
  let current = url
  let opts = { ...options }
  for (let i = 0; ; i++) {
    const res = await withTimeout(cookieFetch(jar, current, { ...opts, redirect: 'manual', agent }), 15000, `fetch ${current}`)
    const location = res.headers.get('location')
    hops.push({ url: current, status: res.status, location })
    if (res.status >= 300 && res.status < 400 && location) {
      if (i + 1 >= maxHops) throw new Error(`more than ${maxHops} redirects: ${JSON.stringify(hops)}`)
      await res.arrayBuffer().catch(() => {})
      current = new URL(location, current).href
      opts = { ...opts, method: 'GET', body: undefined } // 302 after POST becomes GET, as in browsers
      continue
    }
    return { res, hops, url: current }
  }
}

/** A random password of the allowed shape. */
export function randomPassword () {
  return 'pw-' + crypto.randomBytes(9).toString('base64url')
}
