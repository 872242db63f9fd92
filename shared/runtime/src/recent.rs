//! Writes this process made that its watch cache has not shown yet.
//!
//! Handlers decide "write or not" against a watch cache. Right after a write the cache can still
//! hold the object as it was before, and a reconcile queued meanwhile (a workload event, a
//! resync) would find the same difference and send the same write again: harmless for the
//! object, but a write with no change, which a steady cluster must never make.
//!
//! So every write is remembered with the `resourceVersion` the cache had when it was decided. A
//! later decision against the *same* cached version, wanting the *same* content, is that write
//! again and is skipped. Once the cache shows any newer version (ours or someone else's), the
//! memory is dropped and the ordinary comparison decides. Creates are never remembered: an
//! absent object has no version, so "still absent" and "created, then deleted" look alike.

use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept at most; past that the memory is cleared (the cost is one possible extra write).
const MAX_ENTRIES: usize = 4096;

/// The writes of one controller context: `key` → (cached `resourceVersion` the write was
/// decided against, hash of what was written).
#[derive(Debug, Default)]
pub struct RecentWrites(Mutex<HashMap<String, (String, String)>>);

impl RecentWrites {
    /// Whether a write of content `hash` to `key` was already made while the cache showed
    /// `cached_version`. Forgets the write once the cache shows another version.
    pub fn already_written(&self, key: &str, cached_version: Option<&str>, hash: &str) -> bool {
        let Some(cached_version) = cached_version else {
            return false;
        };
        let mut writes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match writes.get(key) {
            Some((version, written)) if version == cached_version => written == hash,
            Some(_) => {
                writes.remove(key);
                false
            }
            None => false,
        }
    }

    /// Records a write of content `hash` to `key`, decided while the cache showed `cached_version`.
    pub fn record(&self, key: String, cached_version: Option<&str>, hash: &str) {
        let Some(cached_version) = cached_version else {
            return;
        };
        let mut writes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if writes.len() >= MAX_ENTRIES {
            writes.clear();
        }
        writes.insert(key, (cached_version.to_string(), hash.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_write_against_the_same_cached_version_is_skipped_once_recorded() {
        let recent = RecentWrites::default();
        let key = "test/a".to_string();
        assert!(!recent.already_written(&key, Some("10"), "1"));
        recent.record(key.clone(), Some("10"), "1");
        assert!(
            recent.already_written(&key, Some("10"), "1"),
            "cache still at 10"
        );
        assert!(
            !recent.already_written(&key, Some("10"), "2"),
            "other content"
        );
    }

    #[test]
    fn a_newer_cached_version_forgets_the_write() {
        let recent = RecentWrites::default();
        let key = "test/b".to_string();
        recent.record(key.clone(), Some("10"), "1");
        assert!(
            !recent.already_written(&key, Some("11"), "1"),
            "cache moved on"
        );
        assert!(
            !recent.already_written(&key, Some("10"), "1"),
            "forgotten, even if a later cache read were older"
        );
    }

    #[test]
    fn creates_are_never_remembered() {
        let recent = RecentWrites::default();
        let key = "test/c".to_string();
        recent.record(key.clone(), None, "1");
        assert!(!recent.already_written(&key, None, "1"));
    }
}
