//! Reference cache: a reference's detection and crop embedding, by content.
//!
//! In GRPO every image of a group shares the prompt's references, and epochs repeat them, so a
//! reference is detected and embedded once and then served from here. Bounded by bytes with
//! least-recently-used eviction; hits, misses and evictions are counted.

use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;
use prometheus::{IntCounter, IntGauge};

/// What is kept per (reference, category, variant).
#[derive(Debug, Clone)]
pub struct CachedReference {
    pub embedding: Arc<[f32]>,
    pub detected: bool,
    pub bbox: Option<[i64; 4]>,
    pub fallback: Option<super::Fallback>,
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

/// The LRU cache, bounded by an approximate byte size.
pub struct ReferenceCache {
    inner: Mutex<Inner>,
    capacity_bytes: usize,
    metrics: CacheMetrics,
}

struct Inner {
    map: LruCache<CacheKey, CachedReference>,
    bytes: usize,
}

fn entry_bytes(k: &CacheKey, v: &CachedReference) -> usize {
    k.hash.len() + k.category.len() + v.embedding.len() * 4 + 96
}

impl ReferenceCache {
    /// An empty cache holding at most `capacity_bytes` (0 disables caching).
    pub fn new(capacity_bytes: usize, metrics: CacheMetrics) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: LruCache::unbounded(),
                bytes: 0,
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

    /// Whether any entry exists for a content hash (to tell "evicted" from "never seen").
    pub fn knows_hash(&self, hash: &str) -> bool {
        self.lock().map.iter().any(|(k, _)| k.hash == hash)
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
            embedding: vec![0.0; d].into(),
            detected: true,
            bbox: Some([0, 0, 1, 1]),
            fallback: None,
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
        assert!(cache.knows_hash("c") && !cache.knows_hash("b"));
        assert_eq!((m.hits.get(), m.misses.get(), m.evictions.get()), (2, 1, 1));
        assert_eq!(m.bytes.get() as usize, 2 * one);
    }
}
