//! Where metadata lives: the layout (every storage node that holds
//! partitions) and the replica set of each partition, by rendezvous hashing.
//! Gateways and storage nodes compute the same answer from the same layout.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Metadata partitions; the object index of one bucket lives in one.
pub const PARTITIONS: u16 = 256;

/// The partition of global records (buckets, access keys).
pub const SYSTEM_PARTITION: u16 = PARTITIONS;

/// Copies of every metadata record.
pub const META_REPLICAS: usize = 3;

/// One storage node of the layout, as kept in every node's `layout` table
/// (key: node id, value: MessagePack with field names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutEntry {
    pub id: String,
    pub zone: String,
    pub http_addr: SocketAddr,
    /// Whether the node holds partitions and takes new chunks.
    #[serde(default)]
    pub state: NodeState,
}

/// Where a storage node is in its life in the layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Holds partitions and takes new chunks.
    #[default]
    Active,
    /// Being decommissioned: no partitions, no new chunks; its chunks are
    /// copied elsewhere, then it is removed.
    Draining,
    /// Out of the layout for good; kept as a record so that it is not
    /// added again while it still runs.
    Removed,
}

/// The partition a partitioned record belongs to: its key's first two bytes.
pub fn partition_of(key: &[u8]) -> Option<u16> {
    match key {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Stable 64-bit hash (FNV-1a, then a splitmix finaliser to spread the bits):
/// every process and every version must compute the same placement.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A node that holds partitions in a layout version: its id and zone,
/// the two inputs of placement.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub zone: String,
}

/// The registry's active nodes as layout members, sorted: draining and
/// removed nodes hold no partitions.
pub fn active_members<'a>(entries: impl IntoIterator<Item = &'a LayoutEntry>) -> Vec<Member> {
    let mut members: Vec<Member> = entries
        .into_iter()
        .filter(|e| e.state == NodeState::Active)
        .map(|e| Member {
            id: e.id.clone(),
            zone: e.zone.clone(),
        })
        .collect();
    members.sort();
    members
}

/// The `n` active nodes with the highest score for this partition, distinct
/// zones first (see [`replicas_of`]).
pub fn replicas<'a>(
    partition: u16,
    nodes: impl IntoIterator<Item = &'a LayoutEntry>,
    n: usize,
) -> Vec<String> {
    replicas_of(partition, &active_members(nodes), n)
}

/// The `n` members with the highest score for this partition (rendezvous
/// hashing), distinct zones first, in score order: a node joining or
/// leaving moves only the partitions it wins or loses. The order matters:
/// the first replica that is not unavailable is the partition's primary.
pub fn replicas_of(partition: u16, members: &[Member], n: usize) -> Vec<String> {
    let mut scored: Vec<(u64, &Member)> = members
        .iter()
        .map(|m| (stable_hash(&[&partition.to_be_bytes(), m.id.as_bytes()]), m))
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let mut chosen: Vec<String> = Vec::with_capacity(n);
    let mut zones: HashSet<&str> = HashSet::new();
    for (_, m) in &scored {
        if chosen.len() < n && zones.insert(m.zone.as_str()) {
            chosen.push(m.id.clone());
        }
    }
    for (_, m) in &scored {
        if chosen.len() < n && !chosen.contains(&m.id) {
            chosen.push(m.id.clone());
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, zone: &str) -> LayoutEntry {
        LayoutEntry {
            id: id.into(),
            zone: zone.into(),
            http_addr: "127.0.0.1:1".parse().unwrap(),
            state: NodeState::Active,
        }
    }

    #[test]
    fn replicas_are_distinct_and_move_little_when_a_node_joins() {
        let five: Vec<LayoutEntry> = (0..5).map(|i| entry(&format!("n{i}"), "z")).collect();
        let six: Vec<LayoutEntry> = (0..6).map(|i| entry(&format!("n{i}"), "z")).collect();
        let mut moved = 0;
        for p in 0..=PARTITIONS {
            let a = replicas(p, &five, 3);
            assert_eq!(a.iter().collect::<HashSet<_>>().len(), 3);
            let b = replicas(p, &six, 3);
            moved += a.iter().filter(|id| !b.contains(id)).count();
        }
        // A sixth node should take about 1/6 of the replicas, not reshuffle all.
        assert!(moved < (PARTITIONS as usize * 3) / 3, "moved {moved}");
    }

    #[test]
    fn replicas_prefer_distinct_zones() {
        let nodes = [
            entry("a1", "a"),
            entry("a2", "a"),
            entry("a3", "a"),
            entry("b1", "b"),
            entry("c1", "c"),
        ];
        for p in 0..PARTITIONS {
            let chosen = replicas(p, &nodes, 3);
            let zones: HashSet<u8> = chosen.iter().map(|id| id.as_bytes()[0]).collect();
            assert_eq!(zones.len(), 3, "partition {p}: {chosen:?}");
        }
    }

    #[test]
    fn draining_and_removed_nodes_hold_no_partitions() {
        let mut nodes: Vec<LayoutEntry> = (0..5).map(|i| entry(&format!("n{i}"), "z")).collect();
        nodes[1].state = NodeState::Draining;
        nodes[2].state = NodeState::Removed;
        for p in 0..=PARTITIONS {
            let chosen = replicas(p, &nodes, 3);
            assert_eq!(chosen.len(), 3);
            assert!(!chosen.contains(&"n1".to_string()) && !chosen.contains(&"n2".to_string()));
        }
    }

    #[test]
    fn partition_is_the_key_prefix() {
        assert_eq!(partition_of(&[1, 2, 3]), Some(0x0102));
        assert_eq!(partition_of(&[1]), None);
    }
}
