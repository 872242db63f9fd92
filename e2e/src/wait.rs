//! Polling with a deadline: tests wait on conditions, never on sleeps.

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `probe` every 250 ms until it returns `Ok`, and returns that value. After `timeout`
/// panics naming `what` and the last thing the probe saw (its `Err` text).
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if started.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_ok_value() {
        let mut n = 0;
        let v = wait_until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move { if n >= 3 { Ok(n) } else { Err(format!("n={n}")) } }
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "last seen: still 1")]
    async fn panics_with_the_last_observation() {
        wait_until::<(), _, _>("never", Duration::from_millis(300), || async {
            Err("still 1".to_string())
        })
        .await;
    }
}
