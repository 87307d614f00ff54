// hypercore@11.37.1: the JavaScript side of bench/log/run.sh, with the same 1 KiB entries and
// JSON rows as atek-data-bench (see bench/README.md).
//
//   node bench/log/hypercore.mjs --dir D --workload single,bytes,open [--fsync 1] [--open-entries N …]
//
// Hypercore never fsyncs: it writes RocksDB's WAL and returns. With --fsync 1 every awaited
// append (or batch) is followed by an fdatasync of that WAL, as data-notes measured it.
//
// `open` builds a log of --open-entries entries (untimed, batches of 1000), closes it, then
// times `new Hypercore(dir)` until ready() in this process (after one unmeasured open):
// --open-repeats times with the files in the page cache (warm), and as many times after
// dropping the store's files from the page cache (cold; fsync + POSIX_FADV_DONTNEED,
// nothing else on the machine is touched).
//
// `replicate1k` and `replicate64k` build a writer core of --replicate-mib MiB of entries of
// that size (untimed), then time a clone (`new Hypercore(dir2, writer.key)`) downloading all of
// it over a TCP connection on 127.0.0.1 in this process (`core.replicate()`'s Noise-encrypted
// stream piped to the socket on both ends), from the connection made to
// `clone.download({ start: 0, end: n }).done()`. The sockets keep Node's defaults (Nagle's
// algorithm on: about 10% faster here for hypercore's small messages than TCP_NODELAY).

import Hypercore from 'hypercore'
import net from 'node:net'
import { once } from 'node:events'
import path from 'node:path'
import {
  BATCH, Claims, System, WRITERS, deadline, dirBytes, emit, entry, evictFromPageCache,
  note, parseArgs, planOrder, quantilesUs, replicateEntry, runMain, storeDir, walSyncer,
  writtenSoFar
} from '../lib/data.mjs'

const REPLICATE_SIZES = { replicate1k: 1024, replicate64k: 65536 }
const WORKLOADS = ['single', 'bytes', 'concurrent32', 'batch100', 'open', ...Object.keys(REPLICATE_SIZES)]
// Entry bytes per append while a writer core for replication is built.
const BUILD_BATCH_BYTES = 8 << 20
const VERSIONS = {
  hypercore_version: (await import('hypercore/package.json', { with: { type: 'json' } })).default.version
}

async function open (store, fsync) {
  const storage = Hypercore.defaultStorage(store)
  const core = new Hypercore(storage)
  await core.ready()
  const sync = fsync ? walSyncer(storage.rocks, path.join(store, 'db')) : null
  return {
    core,
    durable: sync ?? (async () => {}),
    async close () {
      if (sync) await sync.close()
      await core.close()
    }
  }
}

async function main (argv) {
  const opts = parseArgs(argv, { openEntries: 1000000, openRepeats: 3, replicateMib: 64 })
  const plan = planOrder(opts.workload, WORKLOADS)
  const system = opts.fsync
    ? new System('hypercore-fsync', 'D1: fsync added (fdatasync of RocksDB\'s WAL after each awaited append or batch)', VERSIONS)
    : new System('hypercore', 'D0: acknowledged after write(), never fsynced (hypercore writes RocksDB\'s WAL without sync)', VERSIONS)
  note(system, `hypercore ${VERSIONS.hypercore_version}`)

  if (plan.includes('single') || plan.includes('bytes')) {
    const store = storeDir(opts.dir, 'single')
    const log = await open(store, opts.fsync)
    const entries = Array.from({ length: opts.single }, (_, i) => entry(i))
    const writtenBefore = writtenSoFar()
    const latencies = []
    const until = deadline(opts)
    const start = performance.now()
    for (const e of entries) {
      if (performance.now() >= until) break
      const t = performance.now()
      await log.core.append(e)
      await log.durable()
      latencies.push(performance.now() - t)
    }
    const ms = performance.now() - start
    const n = latencies.length
    if (plan.includes('single')) emit(system.single(n, ms, n < opts.single, latencies, 'appends/s'))
    await log.close()
    if (plan.includes('bytes')) {
      const after = writtenSoFar()
      emit(system.bytes(n, dirBytes(store), writtenBefore === null || after === null ? null : after - writtenBefore))
    }
  }

  if (plan.includes('concurrent32')) {
    const store = storeDir(opts.dir, 'concurrent32')
    const log = await open(store, opts.fsync)
    const entries = Array.from({ length: opts.concurrent }, (_, i) => entry(i))
    const claims = new Claims(opts.concurrent, deadline(opts))
    const start = performance.now()
    const counts = await Promise.all(Array.from({ length: WRITERS }, async () => {
      let n = 0
      for (let i = claims.claim(); i !== null; i = claims.claim()) {
        await log.core.append(entries[i])
        await log.durable()
        n++
      }
      return n
    }))
    const ms = performance.now() - start
    const n = counts.reduce((a, b) => a + b, 0)
    emit(system.rate('concurrent32', 'appends/s', n, ms, claims.cut), { how: '32 async writers, each awaiting its appends' })
    await log.close()
  }

  if (plan.includes('batch100')) {
    const store = storeDir(opts.dir, 'batch100')
    const log = await open(store, opts.fsync)
    const total = opts.batches * BATCH
    const entries = Array.from({ length: total }, (_, i) => entry(i))
    const until = deadline(opts)
    const start = performance.now()
    let n = 0
    for (let b = 0; b < total; b += BATCH) {
      if (performance.now() >= until) break
      const batch = entries.slice(b, b + BATCH)
      await log.core.append(batch)
      await log.durable()
      n += batch.length
    }
    const ms = performance.now() - start
    emit(system.rate('batch100', 'entries/s', n, ms, n < total), { how: 'core.append() of an array of 100' })
    await log.close()
  }

  if (plan.includes('open')) {
    const store = storeDir(opts.dir, 'open')
    const log = await open(store, false)
    note(system, `building a log of ${opts.openEntries} entries (untimed)`)
    for (let i = 0; i < opts.openEntries; i += 1000) {
      const batch = []
      for (let j = i; j < Math.min(i + 1000, opts.openEntries); j++) batch.push(entry(j))
      await log.core.append(batch)
    }
    await log.close()
    const sizeBytes = dirBytes(store)

    // The first open in a process pays for loading RocksDB's code and more: not measured.
    const first = new Hypercore(store)
    await first.ready()
    await first.close()

    for (const how of ['warm', 'cold']) {
      const ms = []
      for (let r = 0; r < Math.max(1, opts.openRepeats); r++) {
        if (how === 'cold') await evictFromPageCache(store)
        const start = performance.now()
        const core = new Hypercore(store)
        await core.ready()
        ms.push(performance.now() - start)
        if (core.length !== opts.openEntries) throw new Error(`reopened log has ${core.length} entries, not ${opts.openEntries}`)
        await core.close()
      }
      const { p50 } = quantilesUs(ms)
      emit({
        ...system.row(`open_${how}`, 'ms', p50 / 1000),
        n: opts.openEntries,
        records: opts.openEntries,
        repeats: ms.length,
        runs_ms: ms.map(x => Math.round(x * 1000) / 1000),
        store_bytes: sizeBytes
      }, {
        how: how === 'warm'
          ? 'new Hypercore(dir) until ready(), files in the page cache; median of the repeats'
          : 'the same after fsync + POSIX_FADV_DONTNEED on every file of the store; median of the repeats'
      })
    }
  }

  const replicaSystem = new System(system.name, 'D0: the clone writes RocksDB\'s WAL without sync (never fsynced)', VERSIONS)
  for (const [name, size] of Object.entries(REPLICATE_SIZES)) {
    if (plan.includes(name)) await replicate(replicaSystem, opts, name, size)
  }
}

// One replication workload: a writer core of opts.replicateMib MiB of `size`-byte entries,
// downloaded in full by a clone over loopback TCP.
async function replicate (system, opts, name, size) {
  const store = storeDir(opts.dir, name)
  const n = Math.max(1, Math.floor(opts.replicateMib * (1 << 20) / size))
  const writer = new Hypercore(path.join(store, 'writer'))
  await writer.ready()
  note(system, `${name}: building a core of ${n} entries of ${size} bytes (untimed)`)
  const perBatch = Math.max(1, Math.floor(BUILD_BATCH_BYTES / size))
  for (let i = 0; i < n; i += perBatch) {
    const batch = []
    for (let j = i; j < Math.min(i + perBatch, n); j++) batch.push(replicateEntry(j, size))
    await writer.append(batch)
  }
  if (writer.length !== n) throw new Error(`the writer holds ${writer.length} entries, not ${n}`)
  const clone = new Hypercore(path.join(store, 'clone'), writer.key)
  await clone.ready()

  const errors = []
  const serverSockets = new Set()
  const server = net.createServer(socket => {
    serverSockets.add(socket)
    socket.on('error', e => errors.push(e))
    const stream = writer.replicate(false)
    stream.on('error', e => errors.push(e))
    socket.pipe(stream).pipe(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  let downloaded = 0
  clone.on('download', () => { downloaded++ })

  const socket = net.connect(server.address().port, '127.0.0.1')
  socket.on('error', e => errors.push(e))
  await once(socket, 'connect')
  const start = performance.now()
  const stream = clone.replicate(true)
  stream.on('error', e => errors.push(e))
  socket.pipe(stream).pipe(socket)
  const range = clone.download({ start: 0, end: n })
  let timer = null
  const cut = await Promise.race([
    range.done().then(() => false),
    new Promise(resolve => { timer = setTimeout(() => resolve(true), deadline(opts) - performance.now()) })
  ])
  const ms = performance.now() - start
  clearTimeout(timer)
  const wire = { read: socket.bytesRead, written: socket.bytesWritten }
  if (errors.length > 0 && !cut) throw errors[0]

  const stored = cut ? downloaded : n
  if (!cut && clone.contiguousLength !== n) throw new Error(`the clone's contiguousLength is ${clone.contiguousLength}, not ${n}`)
  const have = clone.contiguousLength
  for (const k of [0, Math.floor(have / 2), have - 1]) {
    if (k < 0 || k >= have) continue
    const got = await clone.get(k, { wait: false })
    if (!got || !got.equals(replicateEntry(k, size))) throw new Error(`the clone's entry ${k} differs from the writer's`)
  }

  const secs = ms / 1000
  const dataBytes = stored * size
  const wireBytes = wire.read + wire.written
  emit({
    ...system.row(name, 'MB/s', secs > 0 ? dataBytes / 1e6 / secs : 0),
    entry_bytes: size,
    n: stored,
    seconds: Math.round(secs * 1000) / 1000,
    cut,
    entries_per_s: secs > 0 ? Math.round(stored / secs * 1000) / 1000 : 0,
    data_bytes: dataBytes,
    wire_bytes: wireBytes,
    wire_bytes_to_reader: wire.read,
    wire_bytes_to_server: wire.written,
    wire_per_entry_byte: wireBytes / Math.max(dataBytes, 1),
    contiguous_length: have
  }, {
    how: 'clone.download({start: 0, end: n}).done() over core.replicate() (Noise-encrypted) on TCP 127.0.0.1; from connect to done'
  })

  range.destroy()
  socket.destroy()
  for (const s of serverSockets) s.destroy()
  server.close()
  await clone.close()
  await writer.close()
}

runMain(main)
