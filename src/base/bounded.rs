//! The one bounded cache of the crate: at most `capacity` entries in a list, found by a
//! predicate (so a caller compares keys the cheap way, a pointer first), the oldest entry out
//! when a new one comes in. Every cache an isolate keeps is a few entries long (keys, nonces,
//! tokens, digests, sources), where a list beats a map in speed and in wasm bytes.

/// At most `capacity` entries, oldest first.
#[derive(Debug)]
pub(crate) struct Bounded<K, V> {
    entries: Vec<(K, V)>,
    capacity: usize,
}

impl<K, V> Bounded<K, V> {
    /// An empty cache of at most `capacity` entries (at least one).
    pub(crate) const fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::new(),
            capacity,
        }
    }

    /// The value of the newest entry whose key `matches`.
    pub(crate) fn find(&self, matches: impl Fn(&K) -> bool) -> Option<&V> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| matches(k))
            .map(|(_, v)| v)
    }

    /// The value of the newest entry whose key `matches`, to change in place.
    pub(crate) fn find_mut(&mut self, matches: impl Fn(&K) -> bool) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .rev()
            .find(|(k, _)| matches(k))
            .map(|(_, v)| v)
    }

    /// Adds an entry, dropping the oldest when full.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.insert_dropping(key, value, |_| Some(0));
    }

    /// Adds an entry; when full, first drops the entry `victim` picks among the entries
    /// (oldest first), or none: the cache then grows past its capacity, for entries that must
    /// stay (see [`crate::edge::isolate`]'s token sources).
    pub(crate) fn insert_dropping(
        &mut self,
        key: K,
        value: V,
        victim: impl FnOnce(&[(K, V)]) -> Option<usize>,
    ) {
        if self.entries.len() >= self.capacity.max(1) {
            if let Some(i) = victim(&self.entries) {
                self.entries.remove(i);
            }
        }
        self.entries.push((key, value));
    }

    /// How many entries it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_and_the_oldest_goes_first() {
        let mut b = Bounded::new(2);
        b.insert("a", 1);
        b.insert("b", 2);
        b.insert("c", 3);
        assert_eq!(b.len(), 2);
        assert_eq!(b.find(|k| *k == "a"), None);
        assert_eq!(b.find(|k| *k == "c"), Some(&3));
        *b.find_mut(|k| *k == "b").unwrap() = 20;
        assert_eq!(b.find(|k| *k == "b"), Some(&20));
    }

    #[test]
    fn the_newest_of_equal_keys_is_found() {
        let mut b = Bounded::new(3);
        b.insert("k", 1);
        b.insert("k", 2);
        assert_eq!(b.find(|k| *k == "k"), Some(&2));
    }

    #[test]
    fn grows_past_capacity_only_when_no_entry_may_go() {
        let mut b = Bounded::new(1);
        b.insert("kept", 1);
        b.insert_dropping("new", 2, |_| None);
        assert_eq!(b.len(), 2);
        b.insert_dropping("newer", 3, |entries| {
            entries.iter().position(|(k, _)| *k == "new")
        });
        assert_eq!(b.len(), 2);
        assert_eq!(b.find(|k| *k == "kept"), Some(&1));
        assert_eq!(b.find(|k| *k == "new"), None);
    }
}
