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

import Hypercore from 'hypercore'
import path from 'node:path'
import {
  BATCH, Claims, System, WRITERS, deadline, dirBytes, emit, entry, evictFromPageCache,
  note, parseArgs, planOrder, quantilesUs, runMain, storeDir, walSyncer, writtenSoFar
} from '../lib/data.mjs'

const WORKLOADS = ['single', 'bytes', 'concurrent32', 'batch100', 'open']
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
  const opts = parseArgs(argv, { openEntries: 1000000, openRepeats: 3 })
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
}

runMain(main)
