//! Exact-match secondary indexes over resource ids.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// Shared empty result for lookups that miss.
static EMPTY: BTreeSet<u64> = BTreeSet::new();

/// A key → ids index: O(1) lookup, O(log n) insert and remove.
#[derive(Debug)]
pub struct Index<K>(HashMap<K, BTreeSet<u64>>);

impl<K> Default for Index<K> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<K: Hash + Eq> Index<K> {
    /// Records that `id` carries `key`.
    pub fn insert(&mut self, key: K, id: u64) {
        self.0.entry(key).or_default().insert(id);
    }

    /// Forgets that `id` carries `key`, dropping the key once unused.
    pub fn remove<Q>(&mut self, key: &Q, id: u64)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(ids) = self.0.get_mut(key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.0.remove(key);
            }
        }
    }

    /// The ids carrying `key`, ascending.
    pub fn get<Q>(&self, key: &Q) -> &BTreeSet<u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get(key).unwrap_or(&EMPTY)
    }

    /// Removes `key` entirely, returning the ids that carried it.
    pub fn take<Q>(&mut self, key: &Q) -> BTreeSet<u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.remove(key).unwrap_or_default()
    }
}

/// Ids present in every set, ascending; costs O(m log n) for the smallest
/// set's size m, never a scan of the whole collection.
pub fn intersect(sets: &[&BTreeSet<u64>]) -> Vec<u64> {
    let Some(smallest) = sets.iter().min_by_key(|set| set.len()) else {
        return Vec::new();
    };
    smallest.iter().copied().filter(|id| sets.iter().all(|set| set.contains(id))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let mut index = Index::<String>::default();
        index.insert("a".into(), 2);
        index.insert("a".into(), 1);
        assert_eq!(index.get("a").iter().copied().collect::<Vec<_>>(), [1, 2]);
        index.remove("a", 1);
        index.remove("a", 2);
        assert!(index.get("a").is_empty());
        assert!(index.0.is_empty());
    }

    #[test]
    fn intersects_sets() {
        let a = BTreeSet::from([1, 2, 3, 4]);
        let b = BTreeSet::from([2, 4, 6]);
        assert_eq!(intersect(&[&a, &b]), [2, 4]);
        assert_eq!(intersect(&[&a, &EMPTY]), Vec::<u64>::new());
        assert_eq!(intersect(&[]), Vec::<u64>::new());
    }
}
