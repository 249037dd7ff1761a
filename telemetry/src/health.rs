//! Readiness: what `/health/ready` asks, and a cache that keeps frequent
//! probes (kubelet, load balancers, several replicas of each) cheap.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

/// Longest a readiness check may take; the chart's probes time out at 3 s,
/// and a check that hangs means "not ready" anyway.
pub const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a process can do its work now.
pub trait Readiness: Send + Sync {
    /// Ok when ready; otherwise a one-line reason for the operator.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The last result of a check, reused for `ttl`. Probes that come while a
/// check runs wait for it, so a check runs at most once per `ttl`.
pub struct CachedCheck {
    ttl: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl CachedCheck {
    pub fn new(ttl: Duration) -> CachedCheck {
        CachedCheck {
            ttl,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached result if fresh, else the result of `check` (bounded by
    /// [`READY_CHECK_TIMEOUT`]).
    pub async fn get<F, Fut>(&self, check: F) -> Result<(), String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last
            && at.elapsed() < self.ttl
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(READY_CHECK_TIMEOUT, check()).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "readiness check took longer than {READY_CHECK_TIMEOUT:?}"
            )),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_fresh_result_is_reused_and_a_stale_one_checked_again() {
        let cache = CachedCheck::new(Duration::from_millis(100));
        let runs = AtomicUsize::new(0);
        let check = || async {
            runs.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>("down".to_string())
        };
        assert_eq!(cache.get(check).await, Err("down".into()));
        assert_eq!(cache.get(check).await, Err("down".into()));
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let _ = cache.get(check).await;
        assert_eq!(runs.load(Ordering::Relaxed), 2);
    }
}
