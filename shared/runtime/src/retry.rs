//! Per-object retry backoff for failed reconciles: 5 s, 10 s, 20 s … up to 5 minutes, reset on
//! success. Invalid input therefore retries slowly instead of in a hot loop, and a transient
//! API error is retried soon.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Failure counts per object key.
#[derive(Debug)]
pub struct Backoffs {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Default for Backoffs {
    fn default() -> Self {
        Backoffs::new(Duration::from_secs(5), Duration::from_secs(300))
    }
}

impl Backoffs {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoffs {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key` and returns how long to wait before the next attempt.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        let delay = self.delay(*n);
        *n = n.saturating_add(1);
        delay
    }

    /// The delay after the `n`th failure in a row (counting from 0).
    fn delay(&self, n: u32) -> Duration {
        self.base.saturating_mul(1u32 << n.min(16)).min(self.max)
    }

    /// The delay the last [`Backoffs::next`] of `key` returned (the base delay if none).
    pub fn last(&self, key: &str) -> Duration {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        self.delay(failures.get(key).map_or(0, |n| n.saturating_sub(1)))
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let b = Backoffs::default();
        let delays: Vec<u64> = (0..9).map(|_| b.next("ns/a").as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.last("ns/a").as_secs(), 300, "the delay next gave last");
        assert_eq!(b.next("ns/b").as_secs(), 5, "keys are independent");
        assert_eq!(b.last("ns/b").as_secs(), 5);
        assert_eq!(b.last("ns/never-failed").as_secs(), 5);
        b.reset("ns/a");
        assert_eq!(b.next("ns/a").as_secs(), 5);
    }
}
