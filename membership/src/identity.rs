//! The identity foca gossips for each member.

use std::fmt;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{NodeId, Role};

/// Who a member is and how to reach it. foca tells identities apart by
/// [`foca::Identity::addr`] (the gossip address); when two share it, the
/// larger `bump` wins, so a process restarted on the same address replaces
/// its previous self.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeIdentity {
    pub(crate) id: NodeId,
    pub(crate) role: Role,
    pub(crate) zone: String,
    pub(crate) gossip_addr: SocketAddr,
    pub(crate) http_addr: SocketAddr,
    /// Start time in milliseconds (high bits) plus random low bits: a restart
    /// gets a larger value than its previous run, and two processes started in
    /// the same millisecond still differ.
    pub(crate) bump: u64,
}

impl NodeIdentity {
    pub(crate) fn new(
        id: NodeId,
        role: Role,
        zone: String,
        gossip_addr: SocketAddr,
        http_addr: SocketAddr,
    ) -> Self {
        // A clock before 1970 only loses the ordering across restarts; the
        // random bits still make the identity fresh.
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX >> 16))
            .unwrap_or(0);
        let bump = (millis << 16) | u64::from(rand::random::<u16>());
        Self {
            id,
            role,
            zone,
            gossip_addr,
            http_addr,
            bump,
        }
    }

    /// A stand-in for a seed we only know by address. foca accepts an
    /// announce addressed to any identity with the receiver's address, and
    /// the reply carries the real identity.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        Self {
            id: NodeId::new(),
            role: Role::Storage,
            zone: String::new(),
            gossip_addr: addr,
            http_addr: addr,
            bump: 0,
        }
    }
}

impl fmt::Debug for NodeIdentity {
    // Short form: identities appear in every foca trace line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{:x}", self.id, self.gossip_addr, self.bump)
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    // Lets foca rejoin on its own after the cluster wrongly declared us Down
    // (a long pause, a partition): the renewed identity wins the address.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn restart_wins_the_address_over_the_previous_run() {
        let before = NodeIdentity::new("n1".into(), Role::Storage, "z".into(), addr(1), addr(2));
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = NodeIdentity::new("n1".into(), Role::Storage, "z".into(), addr(1), addr(2));
        assert!(after.win_addr_conflict(&before));
        assert!(!before.win_addr_conflict(&after));
    }

    #[test]
    fn renewed_identity_keeps_everything_but_the_bump() {
        let id = NodeIdentity::new("n1".into(), Role::Gateway, "z".into(), addr(1), addr(2));
        let renewed = id.renew().expect("always renews");
        assert_eq!(renewed.addr(), id.addr());
        assert_eq!(renewed.id, id.id);
        assert!(renewed.win_addr_conflict(&id));
    }
}
