// hyperbee@2 on hypercore@11.37.1: the JavaScript side of bench/adb/run.sh, with the same
// workloads, keys, values and JSON rows as `atek-data-bench adb` (see bench/README.md).
//
//   node bench/adb/hyperbee.mjs --dir D --workload single,get [--fsync 1] [--single N …]
//
// Hypercore never fsyncs: it writes RocksDB's WAL and returns. With --fsync 1 every awaited
// write (or batch) is followed by an fdatasync of that WAL, as data-notes measured it.

import Hypercore from 'hypercore'
import Hyperbee from 'hyperbee'
import path from 'node:path'
import {
  BATCH, Claims, System, VALUE_BYTES, WRITERS, deadline, dirBytes, emit, getOrder, key,
  note, parseArgs, planOrder, runMain, storeDir, value, walSyncer, writtenSoFar
} from '../lib/data.mjs'

const WORKLOADS = ['single', 'bytes', 'concurrent32', 'batch100', 'get', 'scan']
const VERSIONS = {
  hyperbee_version: (await import('hyperbee/package.json', { with: { type: 'json' } })).default.version,
  hypercore_version: (await import('hypercore/package.json', { with: { type: 'json' } })).default.version
}

async function open (store, fsync) {
  const storage = Hypercore.defaultStorage(store)
  const core = new Hypercore(storage)
  const bee = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'json' })
  await bee.ready()
  const sync = fsync ? walSyncer(storage.rocks, path.join(store, 'db')) : null
  return {
    bee,
    durable: sync ?? (async () => {}),
    async close () {
      if (sync) await sync.close()
      await bee.close()
      await core.close()
    }
  }
}

function checkValue (node, k) {
  if (!node || typeof node.value?.data !== 'string' || JSON.stringify(node.value).length !== VALUE_BYTES) {
    throw new Error(`get ${k}: not a benchmark value`)
  }
}

async function main (argv) {
  const opts = parseArgs(argv)
  const plan = planOrder(opts.workload, WORKLOADS)
  const system = opts.fsync
    ? new System('hyperbee-fsync', 'D1: fsync added (fdatasync of RocksDB\'s WAL after each awaited write or batch)', VERSIONS)
    : new System('hyperbee', 'D0: acknowledged after write(), never fsynced (hypercore writes RocksDB\'s WAL without sync)', VERSIONS)
  note(system, `hyperbee ${VERSIONS.hyperbee_version} on hypercore ${VERSIONS.hypercore_version}`)

  if (plan.includes('single') || plan.includes('bytes')) {
    const store = storeDir(opts.dir, 'single')
    const db = await open(store, opts.fsync)
    const writes = Array.from({ length: opts.single }, (_, i) => [key(i), value(i)])
    const writtenBefore = writtenSoFar()
    const latencies = []
    const until = deadline(opts)
    const start = performance.now()
    for (const [k, v] of writes) {
      if (performance.now() >= until) break
      const t = performance.now()
      await db.bee.put(k, v)
      await db.durable()
      latencies.push(performance.now() - t)
    }
    const ms = performance.now() - start
    const n = latencies.length
    if (plan.includes('single')) emit(system.single(n, ms, n < opts.single, latencies))
    await db.close()
    if (plan.includes('bytes')) {
      const after = writtenSoFar()
      emit(system.bytes(n, dirBytes(store), writtenBefore === null || after === null ? null : after - writtenBefore))
    }
  }

  if (plan.includes('concurrent32')) {
    const store = storeDir(opts.dir, 'concurrent32')
    const db = await open(store, opts.fsync)
    const writes = Array.from({ length: opts.concurrent }, (_, i) => [key(i), value(i)])
    const claims = new Claims(opts.concurrent, deadline(opts))
    const start = performance.now()
    const counts = await Promise.all(Array.from({ length: WRITERS }, async () => {
      let n = 0
      for (let i = claims.claim(); i !== null; i = claims.claim()) {
        await db.bee.put(writes[i][0], writes[i][1])
        await db.durable()
        n++
      }
      return n
    }))
    const ms = performance.now() - start
    const n = counts.reduce((a, b) => a + b, 0)
    emit(system.rate('concurrent32', 'writes/s', n, ms, claims.cut), { how: '32 async writers, each awaiting its puts' })
    await db.close()
  }

  if (plan.includes('batch100')) {
    const store = storeDir(opts.dir, 'batch100')
    const db = await open(store, opts.fsync)
    const total = opts.batches * BATCH
    const writes = Array.from({ length: total }, (_, i) => [key(i), value(i)])
    const until = deadline(opts)
    const start = performance.now()
    let n = 0
    for (let b = 0; b < total; b += BATCH) {
      if (performance.now() >= until) break
      const batch = db.bee.batch()
      for (const [k, v] of writes.slice(b, b + BATCH)) await batch.put(k, v)
      await batch.flush()
      await db.durable()
      n += Math.min(BATCH, total - b)
    }
    const ms = performance.now() - start
    emit(system.rate('batch100', 'entries/s', n, ms, n < total), { how: 'bee.batch(), 100 puts, flush()' })
    await db.close()
  }

  if (plan.includes('get') || plan.includes('scan')) {
    const store = storeDir(opts.dir, 'read')
    const db = await open(store, false)
    note(system, `prefilling ${opts.records} records (untimed)`)
    for (let i = 0; i < opts.records; i += 1000) {
      const batch = db.bee.batch()
      for (let j = i; j < Math.min(i + 1000, opts.records); j++) await batch.put(key(j), value(j))
      await batch.flush()
    }

    if (plan.includes('get')) {
      const keys = getOrder(opts.records, opts.gets).map(key)
      const until = deadline(opts)
      const start = performance.now()
      let n = 0
      for (const k of keys) {
        if (n % 64 === 0 && performance.now() >= until) break
        checkValue(await db.bee.get(k), k)
        n++
      }
      const ms = performance.now() - start
      emit({ ...system.rate('get', 'gets/s', n, ms, n < opts.gets), records: opts.records })
    }

    if (plan.includes('scan')) {
      const until = deadline(opts)
      const start = performance.now()
      let n = 0
      let cut = false
      for await (const node of db.bee.createReadStream()) {
        checkValue(node, node.key)
        n++
        if (n % 1024 === 0 && performance.now() >= until) {
          cut = n < opts.records
          break
        }
      }
      const ms = performance.now() - start
      if (!cut && n !== opts.records) throw new Error(`scan found ${n} records, not ${opts.records}`)
      emit({ ...system.rate('scan', 'records/s', n, ms, cut), records: opts.records }, { how: 'one createReadStream() over every key' })
    }
    await db.close()
  }
}

runMain(main)
