// What bench/adb/hyperbee.mjs and bench/log/hypercore.mjs share with each other and with the
// Rust side (bench/data/src/workload.rs): the keys, the 1 KiB values, the order of random
// gets, the counts and the JSON rows. No package imports here: each benchmark brings its own
// node_modules.
//
// `node bench/lib/data.mjs selftest` prints the numbers workload.rs's test checks, so both
// sides can be seen to agree.

import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'

export const VALUE_BYTES = 1024
const FIELD_CHARS = VALUE_BYTES - '{"data":""}'.length
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789'
export const WRITERS = 32
export const BATCH = 100
const GET_SEED = 42

// Entry i's key: 8 hex digits of i times an odd constant (mod 2^32).
export function key (i) {
  return (Math.imul(i, 0x9e3779b1) >>> 0).toString(16).padStart(8, '0')
}

// xorshift32, as in workload.rs.
export class Rng {
  constructor (seed) {
    const s = (Math.imul(seed, 0x85ebca6b) ^ 0x2545f491) >>> 0
    this.x = s === 0 ? 1 : s
  }

  next () {
    let x = this.x
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.x = x >>> 0
    return this.x
  }

  below (n) {
    return this.next() % n
  }
}

// The 1013-character string field of entry i's value.
export function field (i) {
  const rng = new Rng(i)
  let s = ''
  for (let j = 0; j < FIELD_CHARS; j++) s += ALPHABET[rng.below(36)]
  return s
}

// Entry i's value as an object ({data}), whose JSON text is exactly VALUE_BYTES bytes.
export function value (i) {
  return { data: field(i) }
}

// Entry i as the bytes of that JSON text (log entries).
export function entry (i) {
  return Buffer.from(JSON.stringify(value(i)))
}

// Entry i of `size` bytes (at least 8) of the replication workloads: i as a big-endian u64,
// then the words of new Rng(i), little-endian (bytes that do not compress). As workload.rs.
export function replicateEntry (i, size) {
  const b = Buffer.alloc(Math.max(size, 8))
  b.writeBigUInt64BE(BigInt(i), 0)
  const rng = new Rng(i)
  let o = 8
  for (; o + 4 <= size; o += 4) b.writeUInt32LE(rng.next(), o)
  if (o < size) {
    const w = rng.next()
    for (let k = 0; o < size; k++, o++) b[o] = (w >>> (8 * k)) & 0xff
  }
  return b
}

// The entries the random gets read, in order.
export function getOrder (records, gets) {
  const rng = new Rng(GET_SEED)
  const out = new Array(gets)
  for (let j = 0; j < gets; j++) out[j] = rng.below(Math.max(records, 1))
  return out
}

// Workloads in the order they run; `all` is every one the benchmark knows.
export function planOrder (asked, known) {
  const want = new Set(asked.includes('all') ? known : asked)
  for (const w of want) {
    if (!known.includes(w)) throw new Error(`unknown workload ${w} (known: ${known.join(', ')})`)
  }
  return known.filter(w => want.has(w))
}

// --dir D --workload a,b --single N … (the same flags as atek-data-bench).
export function parseArgs (argv, extra = {}) {
  const opts = {
    dir: null,
    workload: [],
    single: 2000,
    concurrent: 10000,
    batches: 100,
    records: 100000,
    gets: 100000,
    page: 1000,
    maxSeconds: 10,
    fsync: false,
    ...extra
  }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const val = argv[++i]
    if (val === undefined) throw new Error(`${flag} needs a value`)
    const name = flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase())
    if (name === 'dir') opts.dir = val
    else if (name === 'workload') opts.workload.push(...val.split(',').filter(Boolean))
    else if (name === 'fsync') opts.fsync = val === '1' || val === 'true'
    else if (name in opts && typeof opts[name] === 'number') {
      const n = Number(val)
      if (!Number.isFinite(n) || n < 0) throw new Error(`${flag} must be a number, not ${val}`)
      opts[name] = n
    } else throw new Error(`unknown flag ${flag}`)
  }
  if (!opts.dir) throw new Error('--dir is required')
  if (opts.workload.length === 0) throw new Error('--workload is required')
  return opts
}

export function deadline (opts) {
  return performance.now() + Math.max(opts.maxSeconds, 0.001) * 1000
}

// Hands out entry numbers to concurrent writers until n or the deadline.
export class Claims {
  constructor (n, until) {
    this.nextI = 0
    this.n = n
    this.until = until
  }

  claim () {
    if (performance.now() >= this.until || this.nextI >= this.n) return null
    return this.nextI++
  }

  get cut () {
    return this.nextI < this.n
  }
}

// A fresh, empty directory for one store: dir/name.
export function storeDir (dir, name) {
  const p = path.join(dir, name)
  if (fs.existsSync(p) && fs.readdirSync(p).length > 0) {
    throw new Error(`${p} is not empty: give a fresh --dir, results must not include old data`)
  }
  fs.mkdirSync(p, { recursive: true })
  return p
}

export function dirBytes (dir) {
  let total = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    total += e.isDirectory() ? dirBytes(p) : fs.statSync(p).size
  }
  return total
}

// Bytes this process has handed to write calls so far (wchar of /proc/self/io), or null.
export function writtenSoFar () {
  try {
    const m = /^wchar:\s*(\d+)/m.exec(fs.readFileSync('/proc/self/io', 'utf8'))
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}

// Nearest-rank quantiles of latencies in ms, as µs.
export function quantilesUs (ms) {
  const s = Float64Array.from(ms).sort()
  const q = p => s.length === 0 ? 0 : s[Math.min(Math.max(Math.ceil(p * s.length), 1), s.length) - 1] * 1000
  return { p50: q(0.5), p99: q(0.99) }
}

const round = x => Math.round(x * 1000) / 1000

export class System {
  constructor (name, durability, extra = {}) {
    this.name = name
    this.durability = durability
    this.extra = extra
  }

  row (workload, unit, value) {
    return {
      system: this.name,
      workload,
      durability: this.durability,
      unit,
      value: round(value),
      entry_bytes: VALUE_BYTES,
      ...this.extra
    }
  }

  rate (workload, unit, n, ms, cut) {
    const secs = ms / 1000
    return { ...this.row(workload, unit, secs > 0 ? n / secs : 0), n, seconds: round(secs), cut }
  }

  single (n, ms, cut, latenciesMs, unit = 'writes/s') {
    const { p50, p99 } = quantilesUs(latenciesMs)
    return { ...this.rate('single', unit, n, ms, cut), p50_us: round(p50), p99_us: round(p99) }
  }

  bytes (entries, fileBytes, written) {
    const per = b => round(b / Math.max(entries, 1))
    const row = { ...this.row('bytes', 'bytes/entry', per(fileBytes)), n: entries, file_bytes: fileBytes }
    if (written !== null) {
      row.written_bytes = written
      row.written_per_entry = per(written)
    }
    return row
  }
}

export function emit (row, extra = {}) {
  process.stdout.write(JSON.stringify({ ...row, ...extra }) + '\n')
}

export function note (system, what) {
  process.stderr.write(`[${system.name}] ${what}\n`)
}

// The "fsync added" of data-notes: hypercore 11 keeps everything in RocksDB and writes its
// WAL without syncing it. sync() fdatasyncs the WAL file RocksDB is writing now (found with
// rocks.currentWalFile()), and once more the previous one when RocksDB has moved on to a
// new file. `dbDir` is the RocksDB folder (hypercore-storage's `<dir>/db`).
export function walSyncer (rocks, dbDir) {
  const handles = new Map() // WAL number -> Promise<FileHandle>
  let latest = -1
  async function sync () {
    const wal = await rocks.currentWalFile()
    if (!handles.has(wal.number)) handles.set(wal.number, fsp.open(path.join(dbDir, wal.path), 'r'))
    if (wal.number > latest) {
      const older = [...handles.keys()].filter(n => n < wal.number)
      latest = wal.number
      for (const n of older) {
        const h = await handles.get(n)
        handles.delete(n)
        await h.datasync().catch(() => {}) // gone already: RocksDB synced and removed it
        await h.close()
      }
    }
    await (await handles.get(wal.number)).datasync()
  }
  sync.close = async () => {
    for (const h of handles.values()) await (await h).close()
    handles.clear()
  }
  return sync
}

// Drops a folder's files from the page cache (fsync, then POSIX_FADV_DONTNEED on each), so
// the next open reads from the disk. Node has no fadvise; Python's standard library does.
export async function evictFromPageCache (dir) {
  const { execFileSync } = await import('node:child_process')
  const code = [
    'import os, sys',
    'for root, _, files in os.walk(sys.argv[1]):',
    '    for f in files:',
    '        fd = os.open(os.path.join(root, f), os.O_RDONLY)',
    '        try:',
    '            os.fsync(fd)',
    '            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)',
    '        finally:',
    '            os.close(fd)'
  ].join('\n')
  execFileSync('python3', ['-c', code, dir], { stdio: ['ignore', 'ignore', 'inherit'] })
}

// Runs main(argv) and turns a failure into a message and exit status 1.
export function runMain (main) {
  main(process.argv.slice(2)).catch(err => {
    process.stderr.write(`${process.argv[1]}: ${err && err.stack ? err.stack : err}\n`)
    process.exit(1)
  })
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname && process.argv[2] === 'selftest') {
  console.log(JSON.stringify({
    key0: key(0),
    key1: key(1),
    key2: key(2),
    field7Head: field(7).slice(0, 16),
    get3: getOrder(100000, 3),
    valueBytes: entry(99999).length,
    replicate7Head: replicateEntry(7, 1024).subarray(0, 16).toString('hex')
  }))
}
