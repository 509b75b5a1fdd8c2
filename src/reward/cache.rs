//! Reference cache: a reference's detection and crop embedding, by content.
//!
//! In GRPO every image of a group shares the prompt's references, and epochs repeat them, so a
//! reference is detected and embedded once and then served from here. Bounded by bytes with
//! least-recently-used eviction; hits, misses and evictions are counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use lru::LruCache;
use prometheus::{IntCounter, IntGauge};

/// What is kept per (reference, category, variant).
#[derive(Debug, Clone)]
pub struct CachedReference {
    pub embedding: Arc<[f32]>,
    pub detected: bool,
    pub bbox: Option<[i64; 4]>,
    pub fallback: Option<super::Fallback>,
    /// The Pillow mode of a reference that was not detected because it is not RGB.
    pub fallback_mode: Option<&'static str>,
    /// The copy-paste guard's thumbnail of the reference crop (`None`: empty crop).
    pub thumbnail: Option<Arc<super::copy_paste::Thumbnail>>,
}

/// Cache key: content hash of the encoded reference, the subject name as given, and the
/// options that change the result (alpha handling, crop rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub hash: String,
    pub category: String,
    pub variant: u8,
}

/// Counters of the cache.
#[derive(Clone)]
pub struct CacheMetrics {
    pub hits: IntCounter,
    pub misses: IntCounter,
    pub evictions: IntCounter,
    pub bytes: IntGauge,
}

/// The LRU cache, bounded by an approximate byte size, with single-flight misses.
///
/// A GRPO step sends the same new reference from many callers at once; the first to miss
/// computes it and the others wait for its entry instead of detecting and embedding it again.
/// The computation is a stage of a batched pipeline (all of a request's references leave in
/// one detector and one embedder submission), not a per-key future, so the single flight is
/// kept here by hand rather than through a cache crate's per-key loader.
pub struct ReferenceCache {
    inner: Mutex<Inner>,
    capacity_bytes: usize,
    metrics: CacheMetrics,
}

struct Inner {
    map: LruCache<CacheKey, CachedReference>,
    bytes: usize,
    /// Keys some request is computing now; the sender is dropped when it is done.
    in_flight: HashMap<CacheKey, watch::Receiver<()>>,
}

/// What a lookup found.
pub enum Lookup {
    /// The entry.
    Hit(CachedReference),
    /// Nobody computes it: the caller does; others wait until the guard drops (insert first).
    Lead(InFlight),
    /// Another request computes it now: wait on this, then look again.
    Wait(watch::Receiver<()>),
}

/// The duty to compute one reference; dropping it (after inserting, or on failure) wakes
/// the requests waiting for it.
pub struct InFlight {
    cache: Arc<ReferenceCache>,
    key: CacheKey,
    _done: watch::Sender<()>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.cache.lock().in_flight.remove(&self.key);
    }
}

fn entry_bytes(k: &CacheKey, v: &CachedReference) -> usize {
    let thumbnail = v.thumbnail.as_ref().map_or(0, |t| t.bytes());
    k.hash.len() + k.category.len() + v.embedding.len() * 4 + thumbnail + 96
}

impl ReferenceCache {
    /// An empty cache holding at most `capacity_bytes` (0 disables caching).
    pub fn new(capacity_bytes: usize, metrics: CacheMetrics) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: LruCache::unbounded(),
                bytes: 0,
                in_flight: HashMap::new(),
            }),
            capacity_bytes,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks a reference up, counting a hit or a miss.
    pub fn get(&self, key: &CacheKey) -> Option<CachedReference> {
        let found = self.lock().map.get(key).cloned();
        match found {
            Some(_) => self.metrics.hits.inc(),
            None => self.metrics.misses.inc(),
        }
        found
    }

    /// Looks a reference up for a request that may compute it (single flight); a hit or a
    /// miss is counted once the answer is final (a wait is not a miss).
    pub fn lookup(self: &Arc<Self>, key: &CacheKey) -> Lookup {
        let mut inner = self.lock();
        if let Some(hit) = inner.map.get(key).cloned() {
            drop(inner);
            self.metrics.hits.inc();
            return Lookup::Hit(hit);
        }
        if let Some(rx) = inner.in_flight.get(key) {
            return Lookup::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        inner.in_flight.insert(key.clone(), rx);
        drop(inner);
        self.metrics.misses.inc();
        Lookup::Lead(InFlight {
            cache: self.clone(),
            key: key.clone(),
            _done: tx,
        })
    }

    /// Inserts an entry, evicting the least recently used ones beyond the byte budget.
    pub fn insert(&self, key: CacheKey, value: CachedReference) {
        let size = entry_bytes(&key, &value);
        if size > self.capacity_bytes {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.map.put(key.clone(), value) {
            inner.bytes -= entry_bytes(&key, &old);
        }
        inner.bytes += size;
        while inner.bytes > self.capacity_bytes {
            let Some((k, v)) = inner.map.pop_lru() else {
                break;
            };
            inner.bytes -= entry_bytes(&k, &v);
            self.metrics.evictions.inc();
        }
        self.metrics.bytes.set(inner.bytes as i64);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> CacheMetrics {
        CacheMetrics {
            hits: IntCounter::new("h", "h").unwrap(),
            misses: IntCounter::new("m", "m").unwrap(),
            evictions: IntCounter::new("e", "e").unwrap(),
            bytes: IntGauge::new("b", "b").unwrap(),
        }
    }

    fn entry(d: usize) -> CachedReference {
        CachedReference {
            fallback_mode: None,
            embedding: vec![0.0; d].into(),
            detected: true,
            bbox: Some([0, 0, 1, 1]),
            fallback: None,
            thumbnail: None,
        }
    }

    fn key(h: &str) -> CacheKey {
        CacheKey {
            hash: h.into(),
            category: "cat".into(),
            variant: 0,
        }
    }

    #[test]
    fn evicts_least_recently_used_beyond_budget() {
        let m = metrics();
        let one = entry_bytes(&key("a"), &entry(100));
        let cache = ReferenceCache::new(2 * one, m.clone());
        cache.insert(key("a"), entry(100));
        cache.insert(key("b"), entry(100));
        assert!(cache.get(&key("a")).is_some()); // a is now most recent
        cache.insert(key("c"), entry(100));
        assert!(cache.get(&key("b")).is_none());
        assert!(cache.get(&key("a")).is_some());
        assert!(cache.get(&key("c")).is_some());
        assert_eq!((m.hits.get(), m.misses.get(), m.evictions.get()), (3, 1, 1));
        assert_eq!(m.bytes.get() as usize, 2 * one);
    }

    #[test]
    fn the_reference_thumbnail_counts_in_the_byte_budget() {
        let crop = image::RgbImage::new(40, 40);
        let thumb = super::super::copy_paste::Thumbnail::of(&crop).map(Arc::new);
        let with = CachedReference {
            thumbnail: thumb,
            ..entry(100)
        };
        assert_eq!(
            entry_bytes(&key("a"), &with),
            entry_bytes(&key("a"), &entry(100)) + 32 * 32 * 3
        );
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_key_are_computed_once() {
        let m = metrics();
        let cache = Arc::new(ReferenceCache::new(1 << 20, m.clone()));
        let Lookup::Lead(lead) = cache.lookup(&key("a")) else {
            panic!("the first miss leads");
        };
        let Lookup::Wait(mut done) = cache.lookup(&key("a")) else {
            panic!("a second miss waits for the first");
        };
        let waiter = tokio::spawn(async move {
            let _ = done.changed().await;
        });
        cache.insert(key("a"), entry(4));
        drop(lead);
        waiter.await.unwrap();
        assert!(matches!(cache.lookup(&key("a")), Lookup::Hit(_)));
        assert_eq!((m.hits.get(), m.misses.get()), (1, 1));
        // A lead dropped without an entry (its request failed) lets the next caller lead.
        let Lookup::Lead(failed) = cache.lookup(&key("b")) else {
            panic!()
        };
        drop(failed);
        assert!(matches!(cache.lookup(&key("b")), Lookup::Lead(_)));
    }
}
