//! Answers cached per commit. The result tables change only when a
//! checkpoint commits, so an answer stays valid until this process commits
//! the next one (the version) or, because other processes may write the
//! same database, until a short time-to-live passes. A dashboard polling
//! every second then costs a memory read, not a query.
//!
//! One computation per key at a time: when a commit invalidates an entry,
//! the first request recomputes it and the others wait for that result.
//! When only the time-to-live ran out, the others keep getting the previous
//! answer during the recomputation. Entries are bounded in number and bytes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use streamstats_actors::metrics::Metrics;

use super::errors::ApiError;

/// What the result tables looked like: checkpoints committed by this
/// process, then the time of the last one. Ordered, newer is greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    commits: u64,
    last_commit_unix_ms: i64,
}

impl Version {
    /// The version now, to be read before the query it labels.
    pub fn current(metrics: &Metrics) -> Version {
        Version {
            commits: metrics.committed_checkpoints(),
            last_commit_unix_ms: metrics.last_checkpoint_unix_ms(),
        }
    }
}

/// A cached HTTP answer: status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// The memory an entry holds, for the byte bound.
pub trait Weight {
    /// Approximate bytes held.
    fn weight(&self) -> usize;
}

impl Weight for Answer {
    fn weight(&self) -> usize {
        self.body.len() + 64
    }
}

impl Weight for streamstats_actors::store::queries::RecentCounts {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[derive(Clone)]
struct Entry<V> {
    version: Version,
    stored: Instant,
    value: V,
}

struct Slot<V> {
    entry: RwLock<Option<Entry<V>>>,
    /// Held while the entry is recomputed: one computation per key.
    refresh: tokio::sync::Mutex<()>,
}

/// A bounded map from normalized request (route and parsed parameters) to
/// the answer, versioned by commit.
pub struct Cache<V> {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    slots: Mutex<HashMap<String, Arc<Slot<V>>>>,
}

impl<V: Clone + Weight> Cache<V> {
    /// A cache whose entries live at most `ttl` without a commit.
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> Cache<V> {
        Cache {
            ttl,
            max_entries: max_entries.max(1),
            max_bytes,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `key` at `version`, computed by `compute` when the
    /// cached one is older. Errors are returned, never cached.
    pub async fn get<F, Fut>(&self, key: &str, version: Version, compute: F) -> Result<V, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, ApiError>>,
    {
        let slot = self.slot(key);
        let cached = read(&slot.entry);
        if let Some(e) = &cached {
            if e.version >= version && e.stored.elapsed() < self.ttl {
                return Ok(e.value.clone());
            }
        }
        let _refreshing = match cached {
            // Only the time-to-live ran out: whoever is already refreshing
            // will bring the news; meanwhile the previous answer stands.
            Some(e) if e.version >= version => match slot.refresh.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(e.value),
            },
            _ => {
                let guard = slot.refresh.lock().await;
                if let Some(e) = read(&slot.entry) {
                    if e.version >= version && e.stored.elapsed() < self.ttl {
                        return Ok(e.value);
                    }
                }
                guard
            }
        };
        let value = compute().await?;
        {
            let mut entry = slot.entry.write().unwrap_or_else(|p| p.into_inner());
            if entry.as_ref().is_none_or(|e| e.version <= version) {
                *entry = Some(Entry {
                    version,
                    stored: Instant::now(),
                    value: value.clone(),
                });
            }
        }
        self.enforce_bytes(key);
        Ok(value)
    }

    /// The slot of `key`, created (and the cache trimmed) if new.
    fn slot(&self, key: &str) -> Arc<Slot<V>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        while slots.len() >= self.max_entries {
            if !evict_oldest(&mut slots, None) {
                break;
            }
        }
        let slot = Arc::new(Slot {
            entry: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
        });
        slots.insert(key.to_owned(), slot.clone());
        slot
    }

    /// Evicts the oldest entries (never `keep`) until the bytes fit.
    fn enforce_bytes(&self, keep: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let bytes: usize = slots
                .values()
                .filter_map(|s| read(&s.entry).map(|e| e.value.weight()))
                .sum();
            if bytes <= self.max_bytes || !evict_oldest(&mut slots, Some(keep)) {
                break;
            }
        }
    }
}

fn read<V: Clone>(entry: &RwLock<Option<Entry<V>>>) -> Option<Entry<V>> {
    entry.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Removes the entry stored longest ago (empty slots first); false when
/// nothing but `keep` is left.
fn evict_oldest<V: Clone>(slots: &mut HashMap<String, Arc<Slot<V>>>, keep: Option<&str>) -> bool {
    let victim = slots
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != keep)
        .min_by_key(|(_, s)| read(&s.entry).map(|e| e.stored))
        .map(|(k, _)| k.clone());
    match victim {
        Some(k) => slots.remove(&k).is_some(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: Bytes::from(text.to_owned()),
        }
    }

    fn v(commits: u64) -> Version {
        Version {
            commits,
            last_commit_unix_ms: commits as i64,
        }
    }

    async fn body(cache: &Cache<Answer>, key: &str, version: Version, text: &str) -> String {
        let text = text.to_owned();
        let got = cache
            .get(key, version, || async move { Ok(answer(&text)) })
            .await
            .expect("computes");
        String::from_utf8(got.body.to_vec()).expect("utf-8")
    }

    #[actix_rt::test]
    async fn answers_change_only_with_a_new_commit() {
        let cache = Cache::new(Duration::from_secs(3600), 10, 1 << 20);
        assert_eq!(body(&cache, "a", v(1), "first").await, "first");
        assert_eq!(body(&cache, "a", v(1), "second").await, "first");
        assert_eq!(body(&cache, "a", v(2), "third").await, "third");
        // An older reader does not replace a newer answer.
        assert_eq!(body(&cache, "a", v(1), "old").await, "third");
        assert_eq!(body(&cache, "b", v(2), "other key").await, "other key");
    }

    #[actix_rt::test]
    async fn entries_expire_after_the_ttl() {
        let cache = Cache::new(Duration::ZERO, 10, 1 << 20);
        assert_eq!(body(&cache, "a", v(1), "first").await, "first");
        assert_eq!(body(&cache, "a", v(1), "second").await, "second");
    }

    #[actix_rt::test]
    async fn errors_are_not_cached() {
        let cache: Cache<Answer> = Cache::new(Duration::from_secs(3600), 10, 1 << 20);
        let err = cache
            .get("a", v(1), || async {
                Err(ApiError::Unavailable("down".into()))
            })
            .await;
        assert!(err.is_err());
        assert_eq!(body(&cache, "a", v(1), "up").await, "up");
    }

    #[actix_rt::test]
    async fn size_is_bounded() {
        let cache = Cache::new(Duration::from_secs(3600), 3, 1 << 20);
        for key in ["a", "b", "c", "d", "e"] {
            body(&cache, key, v(1), key).await;
        }
        assert_eq!(cache.slots.lock().expect("lock").len(), 3);
        let bytes = Cache::new(Duration::from_secs(3600), 100, 200);
        for key in ["a", "b", "c", "d"] {
            body(&bytes, key, v(1), &"x".repeat(50)).await;
        }
        // 114 bytes per entry: only one fits in 200.
        assert_eq!(bytes.slots.lock().expect("lock").len(), 1);
        assert_eq!(body(&bytes, "d", v(1), "recomputed").await, "x".repeat(50));
    }
}
