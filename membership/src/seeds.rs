//! Seed resolution: turns `host:port` seeds into addresses to announce to,
//! again and again, so a DNS name (a Kubernetes headless Service) that gains
//! pods over time keeps working.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::limits::{DNS_TIMEOUT, MAX_SEED_ADDRS};
use crate::{MemberState, NodeId, Snapshot};

pub(crate) struct Seeder {
    pub(crate) seeds: Vec<String>,
    /// Addresses that are us (advertised and bound): never announced to.
    pub(crate) own: Vec<SocketAddr>,
    pub(crate) local_id: NodeId,
    /// Between rounds while we know fewer members than seed addresses.
    pub(crate) fast: Duration,
    /// Between rounds otherwise.
    pub(crate) slow: Duration,
    pub(crate) to_agent: mpsc::Sender<Vec<SocketAddr>>,
    pub(crate) view: watch::Receiver<Arc<Snapshot>>,
}

impl Seeder {
    pub(crate) async fn run(self) {
        loop {
            let addrs = self.resolve().await;
            let seed_count = addrs.len();
            if !addrs.is_empty() && self.to_agent.send(addrs).await.is_err() {
                return; // the agent stopped
            }
            let known = self
                .view
                .borrow()
                .members
                .iter()
                .filter(|m| m.id != self.local_id && m.state != MemberState::Down)
                .count();
            let wait = if seed_count == 0 || known < seed_count {
                self.fast
            } else {
                self.slow
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.to_agent.closed() => return,
            }
        }
    }

    async fn resolve(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for seed in &self.seeds {
            match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host(seed.as_str())).await {
                Ok(Ok(addrs)) => {
                    for addr in addrs {
                        if out.len() < MAX_SEED_ADDRS
                            && !self.own.contains(&addr)
                            && !out.contains(&addr)
                        {
                            out.push(addr);
                        }
                    }
                }
                // Expected while a Service has no ready pod yet; retried soon.
                Ok(Err(error)) => tracing::debug!(%seed, %error, "seed did not resolve"),
                Err(_) => tracing::debug!(%seed, "seed resolution timed out"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn own_and_duplicate_addresses_are_skipped() {
        let (to_agent, _rx) = mpsc::channel(1);
        let (_tx, view) = watch::channel(Arc::new(Snapshot::default()));
        let own: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let seeder = Seeder {
            seeds: vec![
                "127.0.0.1:5000".into(),
                "127.0.0.1:5001".into(),
                "127.0.0.1:5001".into(),
                "not a seed".into(),
                "127.0.0.2:5002".into(),
            ],
            own: vec![own],
            local_id: "me".into(),
            fast: Duration::from_secs(1),
            slow: Duration::from_secs(1),
            to_agent,
            view,
        };
        let resolved = seeder.resolve().await;
        let expected: Vec<SocketAddr> = vec![
            "127.0.0.1:5001".parse().unwrap(),
            "127.0.0.2:5002".parse().unwrap(),
        ];
        assert_eq!(resolved, expected);
    }
}
