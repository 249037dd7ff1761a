//! How two copies of one record combine, per table. Replicas merge what
//! they are sent, gateways merge what replicas answer, and both use this, so
//! every copy converges to the same bytes.
//!
//! Most tables keep the last writer's record. Object records (the `objects`
//! table) are a CRDT instead: two gateways may add versions of one key at
//! the same time, and whole-record last-writer-wins would drop one of them.
//! A version's data is immutable once written, so the merge is the union of
//! versions by version id (the newest `ts` wins for a reused id such as
//! `null`; for one version, the newest `updated_ts`, which tag changes
//! raise), minus versions that a purge entry (version id, ts) covers. A
//! purge stays in the record, so deleting a version survives a merge with a
//! replica that still holds it. The merge is commutative, associative and
//! idempotent, which is what makes leaderless writes and read repair safe.
//! We chose this over read-modify-write through the partition primary for
//! every write: the primary can fail over to a replica that missed the last
//! write, and a union cannot lose a version that way.
//!
//! The object record is MessagePack with field names, written by the gateway:
//!
//! ```text
//! { versions: [ { version_id: str, ts: u64, updated_ts: u64 (optional),
//!                 data: nil | { etag: str, .. }, .. }, .. ],
//!   purged:   [ { version_id: str, ts: u64 }, .. ], .. }
//! ```
//!
//! Only the fields named here are read; every other field is kept as is.

use std::collections::BTreeMap;

use rmpv::Value;

use crate::wire::{Condition, Expect, Record, Table};

const VERSIONS: &str = "versions";
const PURGED: &str = "purged";
const VERSION_ID: &str = "version_id";
const TS: &str = "ts";
const UPDATED_TS: &str = "updated_ts";
const DATA: &str = "data";
const ETAG: &str = "etag";

/// Nesting depth accepted when decoding a record (an object record needs 4);
/// bounds the work a malformed record can cause.
const MAX_DEPTH: usize = 32;

/// The record both copies merge to. `a` and `b` have the same key.
pub fn merge(table: Table, a: &Record, b: &Record) -> Record {
    debug_assert_eq!(a.key, b.key);
    let winner = if b.wins_over(a) { b } else { a };
    if table == Table::Objects
        && let (Some(x), Some(y)) = (&a.value, &b.value)
        && let (Some(x), Some(y)) = (ObjectView::decode(x), ObjectView::decode(y))
    {
        let rest = if std::ptr::eq(winner, a) {
            x.rest.clone()
        } else {
            y.rest.clone()
        };
        return Record {
            key: a.key.clone(),
            ts: a.ts.max(b.ts),
            value: Some(x.union(y, rest).encode()),
        };
    }
    // Tombstones and undecodable values fall back to last writer wins.
    winner.clone()
}

/// Merges an optional stored copy with an incoming one.
pub fn merge_into(table: Table, current: Option<Record>, incoming: &Record) -> Record {
    match current {
        Some(c) => merge(table, &c, incoming),
        None => incoming.clone(),
    }
}

/// Whether a conditional write may go ahead on this object record. On
/// refusal, the ETag of the current version (None: no current object).
pub fn check_expect(expect: &Expect, record: Option<&Record>) -> Result<(), Option<String>> {
    match (expect, current_etag(record)) {
        (Expect::Absent, None) => Ok(()),
        (Expect::ETag(want), Some(have)) if *want == have => Ok(()),
        (_, current) => Err(current),
    }
}

/// The ETag of an object record's current version, if it is not a delete
/// marker.
pub fn current_etag(record: Option<&Record>) -> Option<String> {
    record
        .and_then(|r| r.value.as_deref())
        .and_then(ObjectView::decode)
        .and_then(|v| v.current_etag())
}

/// Whether a conditional write (protocol 2) may go ahead on `record`, the
/// record as the primary read it at quorum (tombstones included).
pub fn condition_holds(table: Table, condition: &Condition, record: Option<&Record>) -> bool {
    let live = record.filter(|r| r.value.is_some());
    match condition {
        Condition::Unchanged(ts) => live.map_or(0, |r| r.ts) == *ts,
        Condition::Absent if table == Table::Objects => {
            check_expect(&Expect::Absent, record).is_ok()
        }
        Condition::Absent => live.is_none(),
        Condition::ETag(etag) => {
            table == Table::Objects && check_expect(&Expect::ETag(etag.clone()), record).is_ok()
        }
    }
}

/// Whether `current` already holds `write`: the same record, the same live
/// value (a last-writer-wins write its primary stamped anew), or for object
/// records every version and purge it brings. A conditional write retried
/// after an attempt that landed on some replicas finds itself so, and is
/// done rather than refused by its own first attempt.
pub fn holds(table: Table, current: &Record, write: &Record) -> bool {
    if current == write {
        return true;
    }
    match (&current.value, &write.value) {
        (Some(have), Some(want)) if table == Table::Objects => {
            let (Some(have), Some(want)) = (ObjectView::decode(have), ObjectView::decode(want))
            else {
                return false;
            };
            // Each version exactly as written: a version of the same id
            // (`null`) that lost to another is not held.
            want.versions
                .iter()
                .all(|(id, v)| have.versions.get(id) == Some(v))
                && want
                    .purged
                    .iter()
                    .all(|(id, ts)| have.purged.get(id).is_some_and(|held| held >= ts))
        }
        (Some(have), Some(want)) => have == want,
        _ => false,
    }
}

/// What compaction makes of a record (see `crate::sync`).
#[derive(Debug, PartialEq)]
pub enum Compacted {
    Keep,
    /// Nothing in it is needed any more: a tombstone, or an object record
    /// whose every version and purge entry is gone.
    Drop,
    /// The same record without the purge entries older than the cutoff.
    Rewrite(Record),
}

/// Compacts a record that every replica holds: tombstones and object purge
/// entries with a timestamp below `cutoff` are no longer needed to stop a
/// stale copy from coming back, since no stale copy is left.
pub fn compact(table: Table, record: &Record, cutoff: u64) -> Compacted {
    let Some(value) = &record.value else {
        return if record.ts < cutoff {
            Compacted::Drop
        } else {
            Compacted::Keep
        };
    };
    if table != Table::Objects {
        return Compacted::Keep;
    }
    let Some(mut view) = ObjectView::decode(value) else {
        return Compacted::Keep;
    };
    let before = view.purged.len();
    view.purged.retain(|_, ts| *ts >= cutoff);
    if view.versions.is_empty() && view.purged.is_empty() && record.ts < cutoff {
        return Compacted::Drop;
    }
    if view.purged.len() == before {
        return Compacted::Keep;
    }
    Compacted::Rewrite(Record {
        key: record.key.clone(),
        ts: record.ts,
        value: Some(view.encode()),
    })
}

/// What a node stores of an incoming record once entries older than
/// `cutoff` may be forgotten (see [`compact`]): nothing of an old tombstone
/// for a key it does not hold, and of an object record none of the old
/// purge entries that neither it holds nor that remove a version it holds.
/// Without this, replicas that compact at different moments would hand the
/// forgotten entries back to each other for ever. None: store nothing.
pub fn without_forgotten(
    table: Table,
    local: Option<&Record>,
    incoming: &Record,
    cutoff: u64,
) -> Option<Record> {
    let Some(value) = &incoming.value else {
        return (local.is_some() || incoming.ts >= cutoff).then(|| incoming.clone());
    };
    if table != Table::Objects {
        return Some(incoming.clone());
    }
    let Some(mut view) = ObjectView::decode(value) else {
        return Some(incoming.clone());
    };
    let mine = local
        .and_then(|r| r.value.as_deref())
        .and_then(ObjectView::decode);
    let before = view.purged.len();
    view.purged.retain(|id, ts| {
        *ts >= cutoff
            || mine.as_ref().is_some_and(|m| {
                m.purged.contains_key(id) || m.versions.get(id).is_some_and(|(vts, _)| vts <= ts)
            })
    });
    if view.versions.is_empty() && view.purged.is_empty() && local.is_none() {
        return None;
    }
    if view.purged.len() == before {
        return Some(incoming.clone());
    }
    Some(Record {
        key: incoming.key.clone(),
        ts: incoming.ts,
        value: Some(view.encode()),
    })
}

/// An object record taken apart into what the merge needs.
#[derive(Clone)]
struct ObjectView {
    /// version id -> (ts, the whole version entry)
    versions: BTreeMap<String, (u64, Value)>,
    /// version id -> purge ts: versions of that id with ts <= it are gone.
    purged: BTreeMap<String, u64>,
    /// Other top-level fields, kept from the last writer.
    rest: Vec<(Value, Value)>,
}

fn field<'a>(map: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// (version id, ts) of a version or purge entry.
fn id_and_ts(entry: &Value) -> Option<(String, u64)> {
    let map = entry.as_map()?;
    let id = field(map, VERSION_ID)?.as_str()?.to_string();
    let ts = field(map, TS)?.as_u64()?;
    Some((id, ts))
}

fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

impl ObjectView {
    fn decode(bytes: &[u8]) -> Option<ObjectView> {
        let value = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_DEPTH).ok()?;
        let Value::Map(map) = value else { return None };
        let mut view = ObjectView {
            versions: BTreeMap::new(),
            purged: BTreeMap::new(),
            rest: Vec::new(),
        };
        for (k, v) in map {
            match k.as_str() {
                Some(VERSIONS) => {
                    for entry in v.as_array()? {
                        let (id, ts) = id_and_ts(entry)?;
                        view.add_version(id, ts, entry.clone());
                    }
                }
                Some(PURGED) => {
                    for entry in v.as_array()? {
                        let (id, ts) = id_and_ts(entry)?;
                        view.add_purge(id, ts);
                    }
                }
                _ => view.rest.push((k, v)),
            }
        }
        Some(view)
    }

    fn add_version(&mut self, id: String, ts: u64, entry: Value) {
        let rank = |ts: u64, v: &Value| {
            let updated = v
                .as_map()
                .and_then(|m| field(m, UPDATED_TS))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            (ts, updated, encode_value(v))
        };
        let keep_existing = self
            .versions
            .get(&id)
            .is_some_and(|(old_ts, old)| rank(*old_ts, old) >= rank(ts, &entry));
        if !keep_existing {
            self.versions.insert(id, (ts, entry));
        }
    }

    fn add_purge(&mut self, id: String, ts: u64) {
        let slot = self.purged.entry(id).or_insert(ts);
        *slot = (*slot).max(ts);
    }

    fn union(mut self, other: ObjectView, rest: Vec<(Value, Value)>) -> ObjectView {
        for (id, (ts, entry)) in other.versions {
            self.add_version(id, ts, entry);
        }
        for (id, ts) in other.purged {
            self.add_purge(id, ts);
        }
        let purged = &self.purged;
        self.versions
            .retain(|id, (ts, _)| purged.get(id).is_none_or(|p| p < ts));
        self.rest = rest;
        self
    }

    /// Versions oldest first: by ts, then id.
    fn ordered(&self) -> Vec<(&String, &(u64, Value))> {
        let mut all: Vec<_> = self.versions.iter().collect();
        all.sort_by(|a, b| (a.1.0, a.0).cmp(&(b.1.0, b.0)));
        all
    }

    /// The ETag of the newest version, unless it is a delete marker.
    fn current_etag(&self) -> Option<String> {
        let (_, (_, entry)) = self.ordered().pop()?;
        let data = field(entry.as_map()?, DATA)?.as_map()?;
        Some(field(data, ETAG)?.as_str()?.to_string())
    }

    fn encode(&self) -> Vec<u8> {
        let versions = self
            .ordered()
            .into_iter()
            .map(|(_, (_, v))| v.clone())
            .collect();
        let purged = self
            .purged
            .iter()
            .map(|(id, ts)| {
                Value::Map(vec![
                    (Value::from(VERSION_ID), Value::from(id.as_str())),
                    (Value::from(TS), Value::from(*ts)),
                ])
            })
            .collect();
        let mut map = vec![
            (Value::from(VERSIONS), Value::Array(versions)),
            (Value::from(PURGED), Value::Array(purged)),
        ];
        map.extend(self.rest.iter().cloned());
        encode_value(&Value::Map(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: &str, ts: u64, etag: Option<&str>) -> Value {
        let data = match etag {
            Some(e) => Value::Map(vec![(Value::from(ETAG), Value::from(e))]),
            None => Value::Nil,
        };
        Value::Map(vec![
            (Value::from(VERSION_ID), Value::from(id)),
            (Value::from(TS), Value::from(ts)),
            (Value::from(DATA), data),
        ])
    }

    fn record(ts: u64, versions: Vec<Value>, purged: &[(&str, u64)]) -> Record {
        let purged = purged
            .iter()
            .map(|(id, ts)| {
                Value::Map(vec![
                    (Value::from(VERSION_ID), Value::from(*id)),
                    (Value::from(TS), Value::from(*ts)),
                ])
            })
            .collect();
        let value = Value::Map(vec![
            (Value::from(VERSIONS), Value::Array(versions)),
            (Value::from(PURGED), Value::Array(purged)),
        ]);
        Record {
            key: b"k".to_vec(),
            ts,
            value: Some(encode_value(&value)),
        }
    }

    fn ids(r: &Record) -> Vec<String> {
        ObjectView::decode(r.value.as_deref().unwrap())
            .unwrap()
            .ordered()
            .into_iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    #[test]
    fn concurrent_versions_are_all_kept_in_any_merge_order() {
        let a = record(
            5,
            vec![version("v1", 1, Some("e1")), version("v5", 5, Some("e5"))],
            &[],
        );
        let b = record(
            3,
            vec![version("v1", 1, Some("e1")), version("v3", 3, Some("e3"))],
            &[],
        );
        let ab = merge(Table::Objects, &a, &b);
        let ba = merge(Table::Objects, &b, &a);
        assert_eq!(ab, ba);
        assert_eq!(ab.ts, 5);
        assert_eq!(ids(&ab), ["v1", "v3", "v5"]);
        assert_eq!(merge(Table::Objects, &ab, &a), ab);
    }

    #[test]
    fn a_purge_survives_a_merge_with_a_copy_that_still_has_the_version() {
        let old = record(
            3,
            vec![version("v1", 1, Some("e1")), version("v3", 3, Some("e3"))],
            &[],
        );
        let purge = record(9, vec![], &[("v3", 9)]);
        let merged = merge(Table::Objects, &purge, &old);
        assert_eq!(ids(&merged), ["v1"]);
        assert_eq!(merge(Table::Objects, &merged, &old), merged);
    }

    #[test]
    fn a_newer_null_version_replaces_the_older_one_and_outlives_its_purge() {
        let first = record(1, vec![version("null", 1, Some("a"))], &[]);
        let purge = record(2, vec![], &[("null", 2)]);
        let second = record(3, vec![version("null", 3, Some("b"))], &[]);
        let merged = merge(
            Table::Objects,
            &merge(Table::Objects, &first, &second),
            &purge,
        );
        assert_eq!(ids(&merged), ["null"]);
        assert_eq!(
            check_expect(&Expect::ETag("b".into()), Some(&merged)),
            Ok(())
        );
    }

    #[test]
    fn the_newest_update_of_one_version_wins() {
        let tagged = |updated: u64, tag: &str| {
            let Value::Map(mut m) = version("v1", 1, Some("e")) else {
                unreachable!()
            };
            m.push((Value::from(UPDATED_TS), Value::from(updated)));
            m.push((Value::from("tag"), Value::from(tag)));
            Value::Map(m)
        };
        let old = record(9, vec![tagged(0, "old"), version("v9", 9, Some("e9"))], &[]);
        let new = record(5, vec![tagged(5, "new")], &[]);
        let merged = merge(Table::Objects, &old, &new);
        assert_eq!(merged, merge(Table::Objects, &new, &old));
        let view = ObjectView::decode(merged.value.as_deref().unwrap()).unwrap();
        assert_eq!(view.versions["v1"].1, tagged(5, "new"));
    }

    #[test]
    fn conditions_see_markers_as_absent() {
        let marker = record(
            2,
            vec![version("v1", 1, Some("e1")), version("v2", 2, None)],
            &[],
        );
        assert_eq!(check_expect(&Expect::Absent, Some(&marker)), Ok(()));
        assert_eq!(check_expect(&Expect::Absent, None), Ok(()));
        let live = record(1, vec![version("v1", 1, Some("e1"))], &[]);
        assert_eq!(
            check_expect(&Expect::Absent, Some(&live)),
            Err(Some("e1".into()))
        );
        assert_eq!(
            check_expect(&Expect::ETag("e1".into()), Some(&live)),
            Ok(())
        );
        assert_eq!(check_expect(&Expect::ETag("e1".into()), None), Err(None));
    }

    #[test]
    fn compaction_forgets_only_what_is_older_than_the_cutoff() {
        let tomb = |ts| Record {
            key: b"k".to_vec(),
            ts,
            value: None,
        };
        assert_eq!(compact(Table::Buckets, &tomb(5), 10), Compacted::Drop);
        assert_eq!(compact(Table::Buckets, &tomb(15), 10), Compacted::Keep);
        let live = record(
            3,
            vec![version("v1", 3, Some("e"))],
            &[("v0", 2), ("v9", 12)],
        );
        let Compacted::Rewrite(shrunk) = compact(Table::Objects, &live, 10) else {
            panic!("expected a rewrite")
        };
        let view = ObjectView::decode(shrunk.value.as_deref().unwrap()).unwrap();
        assert_eq!(view.purged.keys().collect::<Vec<_>>(), ["v9"]);
        assert_eq!(ids(&shrunk), ["v1"]);
        assert_eq!(compact(Table::Objects, &shrunk, 10), Compacted::Keep);
        let emptied = record(4, vec![], &[("v1", 4)]);
        assert_eq!(compact(Table::Objects, &emptied, 10), Compacted::Drop);
        assert_eq!(compact(Table::Objects, &emptied, 3), Compacted::Keep);
        assert_eq!(compact(Table::Buckets, &live, 100), Compacted::Keep);
    }

    #[test]
    fn forgotten_entries_are_not_taken_back() {
        let cutoff = 10;
        let old_tomb = Record {
            key: b"k".to_vec(),
            ts: 5,
            value: None,
        };
        assert_eq!(
            without_forgotten(Table::Buckets, None, &old_tomb, cutoff),
            None
        );
        let live = record(3, vec![version("v1", 3, Some("e"))], &[]);
        assert_eq!(
            without_forgotten(Table::Buckets, Some(&live), &old_tomb, cutoff),
            Some(old_tomb.clone()),
            "a tombstone that deletes something here is kept"
        );
        // An old purge of a version held here is applied; one of nothing is not kept.
        let incoming = record(4, vec![], &[("v1", 4), ("v0", 2), ("v9", 12)]);
        let kept = without_forgotten(Table::Objects, Some(&live), &incoming, cutoff).unwrap();
        let view = ObjectView::decode(kept.value.as_deref().unwrap()).unwrap();
        assert_eq!(view.purged.keys().collect::<Vec<_>>(), ["v1", "v9"]);
        let emptied = record(4, vec![], &[("v0", 2)]);
        assert_eq!(
            without_forgotten(Table::Objects, None, &emptied, cutoff),
            None
        );
    }

    #[test]
    fn a_record_holds_the_writes_that_landed_in_it() {
        // Two racing writes of the `null` version: only the one that won
        // is held, though merging the other changes nothing.
        let won = record(7, vec![version("null", 7, Some("mine"))], &[]);
        let lost = record(6, vec![version("null", 6, Some("theirs"))], &[]);
        assert_eq!(merge(Table::Objects, &won, &lost), won);
        assert!(holds(Table::Objects, &won, &won.clone()));
        assert!(!holds(Table::Objects, &won, &lost));
        let first = record(5, vec![version("v5", 5, Some("e5"))], &[]);
        let both = merge(
            Table::Objects,
            &first,
            &record(6, vec![version("v6", 6, Some("e6"))], &[]),
        );
        assert!(holds(Table::Objects, &both, &first));
        assert!(!holds(Table::Objects, &first, &both));
        let bucket = |ts, v: &str| Record {
            key: b"k".to_vec(),
            ts,
            value: Some(v.as_bytes().to_vec()),
        };
        // Stamped anew by the primary: the same value counts.
        assert!(holds(
            Table::Buckets,
            &bucket(9, "id-1"),
            &bucket(3, "id-1")
        ));
        // A different bucket created first does not.
        assert!(!holds(
            Table::Buckets,
            &bucket(9, "id-2"),
            &bucket(3, "id-1")
        ));
        let tomb = Record {
            key: b"k".to_vec(),
            ts: 9,
            value: None,
        };
        assert!(holds(Table::Buckets, &tomb, &tomb.clone()));
        assert!(!holds(
            Table::Buckets,
            &tomb,
            &Record {
                ts: 8,
                ..tomb.clone()
            }
        ));
    }

    #[test]
    fn conditions_of_protocol_2() {
        let live = record(4, vec![version("v1", 4, Some("e1"))], &[]);
        let marker = record(
            5,
            vec![version("v1", 4, Some("e1")), version("v5", 5, None)],
            &[],
        );
        let tomb = Record {
            key: b"k".to_vec(),
            ts: 6,
            value: None,
        };
        let o = Table::Objects;
        assert!(condition_holds(o, &Condition::Absent, None));
        assert!(condition_holds(o, &Condition::Absent, Some(&marker)));
        assert!(!condition_holds(o, &Condition::Absent, Some(&live)));
        assert!(condition_holds(
            o,
            &Condition::ETag("e1".into()),
            Some(&live)
        ));
        assert!(!condition_holds(
            o,
            &Condition::ETag("e2".into()),
            Some(&live)
        ));
        assert!(condition_holds(o, &Condition::Unchanged(4), Some(&live)));
        assert!(!condition_holds(o, &Condition::Unchanged(3), Some(&live)));
        let b = Table::Buckets;
        assert!(condition_holds(b, &Condition::Absent, Some(&tomb)));
        assert!(!condition_holds(b, &Condition::Absent, Some(&live)));
        assert!(condition_holds(b, &Condition::Unchanged(0), Some(&tomb)));
        assert!(condition_holds(b, &Condition::Unchanged(4), Some(&live)));
        assert!(!condition_holds(
            b,
            &Condition::ETag("e1".into()),
            Some(&live)
        ));
    }

    #[test]
    fn other_tables_and_tombstones_are_last_writer_wins() {
        let a = record(1, vec![version("v1", 1, Some("e"))], &[]);
        let tomb = Record {
            key: b"k".to_vec(),
            ts: 2,
            value: None,
        };
        assert_eq!(merge(Table::Objects, &a, &tomb), tomb);
        let b = record(2, vec![version("v2", 2, Some("e"))], &[]);
        assert_eq!(merge(Table::Buckets, &a, &b), b);
        let junk = Record {
            key: b"k".to_vec(),
            ts: 3,
            value: Some(vec![0xc1]),
        };
        assert_eq!(merge(Table::Objects, &a, &junk), junk);
    }
}
