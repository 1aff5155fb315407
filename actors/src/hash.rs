//! Hash maps and sets of the hot paths (presence sets, chatters, a batch's
//! streams) with foldhash, seeded per process, instead of SipHash, which
//! cost about 8% of a replay's CPU.

/// The hasher of [`FastMap`] and [`FastSet`].
pub type FastHasher = foldhash::fast::RandomState;
/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastHasher>;
/// A `HashSet` with [`FastHasher`].
pub type FastSet<T> = std::collections::HashSet<T, FastHasher>;
