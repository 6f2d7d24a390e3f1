//! A small map bounded by least-recent use, for the isolate's token sources: one per
//! configuration (every profile, and each rotation of one), so that a Worker with many profiles
//! keeps them all while a rotated configuration's old source ages out instead of the whole map
//! being cleared.

use std::cell::Cell;
use std::rc::Rc;

use crate::base::bounded::Bounded;

/// When an entry was last used: shared with whoever holds the value, so use outside the map
/// (a cached client signing requests) counts too.
#[derive(Debug, Clone, Default)]
pub(crate) struct LastUse(Rc<Cell<u64>>);

impl LastUse {
    /// Marks the entry used now (`tick` is the map's clock).
    pub(crate) fn touch(&self, tick: u64) {
        self.0.set(tick);
    }
}

/// At most `capacity` entries; inserting past it drops the least recently used entry that
/// `may_drop` allows (none, if every entry must stay).
pub(crate) struct Lru<K, V> {
    entries: Bounded<K, (V, LastUse)>,
    tick: u64,
}

impl<K: PartialEq + Clone, V: Clone> Lru<K, V> {
    pub(crate) const fn new(capacity: usize) -> Self {
        Self {
            entries: Bounded::new(capacity),
            tick: 0,
        }
    }

    /// A tick of the map's clock: later calls return larger values.
    pub(crate) fn now(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The value for `key`, marked used, or a new one from `make`.
    pub(crate) fn get_or_insert_with(
        &mut self,
        key: &K,
        make: impl FnOnce() -> V,
        may_drop: impl Fn(&V) -> bool,
    ) -> (V, LastUse) {
        let now = self.now();
        if let Some((value, used)) = self.entries.find(|k| k == key) {
            used.touch(now);
            return (value.clone(), used.clone());
        }
        let used = LastUse::default();
        used.touch(now);
        let value = make();
        self.entries
            .insert_dropping(key.clone(), (value.clone(), used.clone()), |entries| {
                let idle = entries
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, (v, _)))| may_drop(v));
                idle.min_by_key(|(_, (_, (_, used)))| used.0.get())
                    .map(|(i, _)| i)
            });
        (value, used)
    }

    #[cfg(test)]
    fn contains(&self, key: &K) -> bool {
        self.entries.find(|k| k == key).is_some()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_recently_used_and_drops_the_least_recent_idle_one() {
        let mut lru: Lru<&str, u32> = Lru::new(3);
        let (_, billing_use) = lru.get_or_insert_with(&"billing", || 1, |_| true);
        lru.get_or_insert_with(&"crm", || 2, |_| true);
        lru.get_or_insert_with(&"old-rotation", || 3, |_| true);
        // billing is used through a client held elsewhere, never looked up again.
        let now = lru.now();
        billing_use.touch(now);
        lru.get_or_insert_with(&"crm", || 99, |_| true);
        lru.get_or_insert_with(&"new-rotation", || 4, |_| true);
        assert_eq!(lru.len(), 3);
        assert!(!lru.contains(&"old-rotation"));
        assert!(lru.contains(&"billing") && lru.contains(&"crm"));
        // A value that must stay (a token request under way) is passed over.
        lru.get_or_insert_with(&"another", || 5, |v| *v != 1);
        assert!(lru.contains(&"billing"), "billing was in use");
        assert_eq!(lru.len(), 3);
        // Found again, not remade.
        assert_eq!(lru.get_or_insert_with(&"another", || 77, |_| true).0, 5);
    }

    #[test]
    fn grows_past_capacity_only_when_nothing_may_go() {
        let mut lru: Lru<u32, u32> = Lru::new(2);
        for k in 0..4 {
            lru.get_or_insert_with(&k, || k, |_| false);
        }
        assert_eq!(lru.len(), 4);
    }
}
