//! Read-mostly state that every request reads, with a copy per thread.
//!
//! The token registry and the routing table are read on every call and change only when a
//! service starts or stops. Behind a plain `RwLock`, each read still writes to memory every
//! HTTP thread shares: the lock's state, then the reference count of the `Arc` handed out,
//! and the same again to let go. With the host's event loops on different CPUs, every one
//! of those writes moves a cache line from one CPU to the other, several times per call.
//!
//! [`PerThread`] keeps the shared value with a generation number that every change bumps.
//! A thread reads its own copy, made with [`Copies::copy`] so that its `Arc`s are its own,
//! and makes a new one when the generation moved: reads touch shared memory only to load
//! the generation, which stays in every CPU's cache until the next change. A change is
//! seen by every thread's next read.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A value that can be copied for one thread: without sharing the reference counts of the
/// original's `Arc`s, which would bring back the writes to shared memory.
pub(crate) trait Copies {
    /// A copy whose `Arc`s are new.
    fn copy(&self) -> Self;
}

/// A map of shared values: the copy has an `Arc` of its own for each.
impl<K: Clone + Eq + std::hash::Hash, V: Clone> Copies
    for std::collections::HashMap<K, std::sync::Arc<V>>
{
    fn copy(&self) -> Self {
        self.iter()
            .map(|(key, value)| (key.clone(), std::sync::Arc::new(V::clone(value))))
            .collect()
    }
}

/// Shared state with a copy per thread; see the module docs.
pub(crate) struct PerThread<T> {
    /// Tells this value's copies from those of others in a thread's cache.
    id: u64,
    generation: AtomicU64,
    value: RwLock<T>,
}

/// How many values a thread keeps copies of (a process runs one host; tests run several).
const COPIES_PER_THREAD: usize = 16;

/// A thread's copy of one value: the value's id, the generation copied, the copy.
type ThreadCopy = (u64, u64, Rc<dyn Any>);

thread_local! {
    /// This thread's copies, the latest made last.
    static COPIES: RefCell<Vec<ThreadCopy>> = const { RefCell::new(Vec::new()) };
}

/// The shared value as its own `Debug` shows it (`None` while it is being changed).
impl<T: std::fmt::Debug> std::fmt::Debug for PerThread<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerThread")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .field("value", &self.value.try_read().ok().as_deref())
            .finish()
    }
}

/// The shared value locked for a change, which every thread's next read sees.
pub(crate) struct Changing<'a, T> {
    value: RwLockWriteGuard<'a, T>,
    generation: &'a AtomicU64,
}

impl<T> std::ops::Deref for Changing<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for Changing<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T> Drop for Changing<'_, T> {
    fn drop(&mut self) {
        // Before the lock is let go (fields drop after this), so that a copy made under
        // the read lock has the generation of what it copied.
        self.generation.fetch_add(1, Ordering::Release);
    }
}

impl<T: Default + Copies + 'static> Default for PerThread<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: Copies + 'static> PerThread<T> {
    /// Shares `value`.
    pub(crate) fn new(value: T) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            value: RwLock::new(value),
        }
    }

    /// Changes the value; every thread's next read sees the change.
    pub(crate) fn write<R>(&self, change: impl FnOnce(&mut T) -> R) -> R {
        change(&mut self.lock())
    }

    /// Locks the value for a change, which every thread's next read sees once the guard
    /// is dropped.
    pub(crate) fn lock(&self) -> Changing<'_, T> {
        Changing {
            value: self.value.write().unwrap_or_else(|p| p.into_inner()),
            generation: &self.generation,
        }
    }

    /// The shared value itself, for rare reads that need no copy.
    pub(crate) fn shared(&self) -> RwLockReadGuard<'_, T> {
        self.value.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared value, unless it is locked (for `Debug`, which must not wait).
    pub(crate) fn try_shared(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.value.try_read().ok()
    }

    /// Reads this thread's copy, made afresh if the value changed since.
    pub(crate) fn read<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        let copy = COPIES.with_borrow_mut(|copies| {
            if let Some(at) = copies.iter().position(|(id, ..)| *id == self.id) {
                if copies[at].1 == generation {
                    return copies[at].2.clone();
                }
                copies.remove(at);
            } else if copies.len() >= COPIES_PER_THREAD {
                copies.remove(0);
            }
            let (generation, copy) = self.fresh_copy();
            copies.push((self.id, generation, copy.clone()));
            copy
        });
        // Outside the borrow of the cache: `read` may read another PerThread.
        match copy.downcast_ref::<T>() {
            Some(value) => read(value),
            None => unreachable!("a PerThread's copies are of its own type"),
        }
    }

    fn fresh_copy(&self) -> (u64, Rc<dyn Any>) {
        let value = self.shared();
        let generation = self.generation.load(Ordering::Acquire);
        (generation, Rc::new(value.copy()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Default)]
    struct Names(Vec<Arc<String>>);

    impl Copies for Names {
        fn copy(&self) -> Self {
            Self(self.0.iter().map(|n| Arc::new(n.to_string())).collect())
        }
    }

    #[test]
    fn reads_see_every_change_and_copies_share_no_counts() {
        let names = PerThread::new(Names(vec![Arc::new("a".into())]));
        let first = names.read(|n| n.0[0].clone());
        assert_eq!(*first, "a");
        // The copy's Arc is not the shared one.
        assert_eq!(Arc::strong_count(&names.shared().0[0]), 1);
        // The same copy serves the next read on this thread.
        assert!(names.read(|n| Arc::ptr_eq(&n.0[0], &first)));

        names.write(|n| n.0.push(Arc::new("b".into())));
        assert_eq!(names.read(|n| n.0.len()), 2);

        // Another thread makes a copy of its own, with the change.
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(names.read(|n| n.0.len()), 2));
        });
        names.write(|n| n.0.clear());
        assert_eq!(names.read(|n| n.0.len()), 0);
        names.lock().0.push(Arc::new("c".into()));
        assert_eq!(names.read(|n| n.0.len()), 1);
    }

    #[test]
    fn many_values_on_one_thread_each_read_their_own() {
        let values: Vec<PerThread<Names>> = (0..COPIES_PER_THREAD + 3)
            .map(|i| PerThread::new(Names(vec![Arc::new(i.to_string())])))
            .collect();
        for _ in 0..2 {
            for (i, v) in values.iter().enumerate() {
                assert_eq!(v.read(|n| n.0[0].to_string()), i.to_string());
            }
        }
    }
}
