//! Metadata records in redb: one redb table per [`Table`], keys are bytes,
//! values are (timestamp, optional value) merged as [`crate::merge`] says.

use std::ops::Bound;

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::merge;
use crate::wire::{CasOutcome, CasRequest, ChunkId, Record, Table};

/// A stored value: (ts, value); `None` is a tombstone.
type Stored = (u64, Option<Vec<u8>>);

pub struct MetaStore {
    db: Database,
}

/// This node's queue of chunk files to delete once no record lists them
/// (chunk id -> when it was queued, ms): local, not replicated.
const DOOMED: TableDefinition<'static, &'static [u8], u64> = TableDefinition::new("doomed_chunks");

fn definition(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

fn decode(key: &[u8], raw: &[u8]) -> anyhow::Result<Record> {
    let (ts, value): Stored = postcard::from_bytes(raw)
        .with_context(|| format!("undecodable record for key {}", hex::encode(key)))?;
    Ok(Record {
        key: key.to_vec(),
        ts,
        value,
    })
}

type RedbTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

fn read(t: &RedbTable<'_>, key: &[u8]) -> anyhow::Result<Option<Record>> {
    match t.get(key)? {
        Some(raw) => Ok(Some(decode(key, raw.value())?)),
        None => Ok(None),
    }
}

/// Merges `incoming` into the stored copy; returns the new record when it
/// changed what is stored.
fn store(
    t: &mut RedbTable<'_>,
    table: Table,
    current: Option<Record>,
    incoming: &Record,
) -> anyhow::Result<Option<Record>> {
    let merged = merge::merge_into(table, current.clone(), incoming);
    if current.as_ref() == Some(&merged) {
        return Ok(None);
    }
    let stored = postcard::to_stdvec(&(merged.ts, &merged.value))?;
    t.insert(merged.key.as_slice(), stored.as_slice())?;
    Ok(Some(merged))
}

impl MetaStore {
    /// Opens or creates the redb file and makes sure every table exists, so
    /// readers never meet a missing table.
    pub fn open(path: &std::path::Path) -> anyhow::Result<MetaStore> {
        let db = Database::create(path)
            .with_context(|| format!("open metadata database {}", path.display()))?;
        let txn = db.begin_write()?;
        for table in Table::ALL {
            txn.open_table(definition(table))?;
        }
        txn.open_table(DOOMED)?;
        txn.commit()?;
        Ok(MetaStore { db })
    }

    /// Queues chunk files for deletion, durably (an id queued already keeps
    /// its first time).
    pub fn doom(&self, ids: &[ChunkId], now_ms: u64) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(DOOMED)?;
            for id in ids {
                if t.get(&id.0[..])?.is_none() {
                    t.insert(&id.0[..], now_ms)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Up to `limit` queued chunk ids above `after`, with when each was queued.
    pub fn doomed(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> anyhow::Result<Vec<(ChunkId, u64)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(DOOMED)?;
        let start = after.map(|id| id.0);
        let lower = match &start {
            Some(id) => Bound::Excluded(&id[..]),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for entry in t.range::<&[u8]>((lower, Bound::Unbounded))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            let id: [u8; 16] = k
                .value()
                .try_into()
                .context("a queued chunk id is not 16 bytes")?;
            out.push((ChunkId(id), v.value()));
        }
        Ok(out)
    }

    /// Takes chunk ids off the deletion queue (deleted, or found listed).
    pub fn undoom(&self, ids: &[ChunkId]) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(DOOMED)?;
            for id in ids {
                t.remove(&id.0[..])?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Merges records in one durable transaction; returns how many changed.
    /// A merge that changes nothing commits nothing (no fsync): anti-entropy
    /// sends mostly records the receiver has.
    pub fn merge(&self, table: Table, records: &[Record]) -> anyhow::Result<usize> {
        self.merge_after(table, records, 0)
    }

    /// [`MetaStore::merge`], leaving out tombstones and purge entries older
    /// than `cutoff` that this node does not need (see
    /// [`merge::without_forgotten`]): it may have compacted them already.
    pub fn merge_after(
        &self,
        table: Table,
        records: &[Record],
        cutoff: u64,
    ) -> anyhow::Result<usize> {
        let txn = self.db.begin_write()?;
        let mut changed = 0;
        {
            let mut t = txn.open_table(definition(table))?;
            for record in records {
                let current = read(&t, &record.key)?;
                let incoming = if cutoff > 0 {
                    match merge::without_forgotten(table, current.as_ref(), record, cutoff) {
                        Some(kept) => kept,
                        None => continue,
                    }
                } else {
                    record.clone()
                };
                if store(&mut t, table, current, &incoming)?.is_some() {
                    changed += 1;
                }
            }
        }
        if changed == 0 {
            txn.abort()?;
        } else {
            txn.commit()?;
        }
        Ok(changed)
    }

    /// Stores `value` under `key` as is (no merge): the node's own records
    /// of the layout table (its history and acceptor state).
    pub fn replace(&self, table: Table, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(definition(table))?;
            let stored = postcard::to_stdvec(&(0u64, Some(value)))?;
            t.insert(key, stored.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Replaces (or, with None, forgets) records whose stored copy is still
    /// exactly the one read: a compaction or a drop must never undo a write
    /// that landed since. Only for records this node may forget or shrink
    /// (see `crate::sync`). Returns how many changed.
    pub fn rewrite_if_unchanged(
        &self,
        table: Table,
        rewrites: &[(Record, Option<Record>)],
    ) -> anyhow::Result<usize> {
        let txn = self.db.begin_write()?;
        let mut done = 0;
        {
            let mut t = txn.open_table(definition(table))?;
            for (read_before, new) in rewrites {
                if read(&t, &read_before.key)?.as_ref() != Some(read_before) {
                    continue;
                }
                match new {
                    Some(new) => {
                        debug_assert_eq!(read_before.key, new.key);
                        let stored = postcard::to_stdvec(&(new.ts, &new.value))?;
                        t.insert(new.key.as_slice(), stored.as_slice())?;
                    }
                    None => {
                        t.remove(read_before.key.as_slice())?;
                    }
                }
                done += 1;
            }
        }
        if done == 0 {
            txn.abort()?;
        } else {
            txn.commit()?;
        }
        Ok(done)
    }

    /// A conditional write of an object record, atomic on this node: in one
    /// write transaction (redb runs one at a time, which serialises
    /// conditional writes per key) the stored copy is merged with what the
    /// caller saw, the expectation is checked, and `write` is merged in.
    pub fn cas(&self, table: Table, req: &CasRequest) -> anyhow::Result<CasOutcome> {
        let key = &req.write.key;
        anyhow::ensure!(
            req.seen.as_ref().is_none_or(|s| &s.key == key),
            "cas: seen and write name different keys"
        );
        let txn = self.db.begin_write()?;
        let outcome = {
            let mut t = txn.open_table(definition(table))?;
            let mut current = read(&t, key)?;
            if let Some(seen) = &req.seen {
                current = Some(merge::merge_into(table, current, seen));
            }
            // A retry of this very write (its answer was lost) is written,
            // not refused by its own first attempt.
            let retried = current
                .as_ref()
                .is_some_and(|c| merge::holds(table, c, &req.write));
            match merge::check_expect(&req.expect, current.as_ref()) {
                Err(current_etag) if !retried => CasOutcome::Refused { current_etag },
                _ => {
                    let written = merge::merge_into(table, current.clone(), &req.write);
                    store(&mut t, table, current, &written)?;
                    CasOutcome::Written(written)
                }
            }
        };
        txn.commit()?;
        Ok(outcome)
    }

    pub fn get(&self, table: Table, key: &[u8]) -> anyhow::Result<Option<Record>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(definition(table))?;
        match t.get(key)? {
            Some(raw) => Ok(Some(decode(key, raw.value())?)),
            None => Ok(None),
        }
    }

    /// `start <= key < end` (empty `end`: unbounded), at most `limit`
    /// records and, past the first, at most `max_bytes` of keys and values.
    /// The flag says whether the range holds more.
    pub fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        limit: usize,
        max_bytes: usize,
    ) -> anyhow::Result<(Vec<Record>, bool)> {
        let mut out = Vec::new();
        if limit == 0 || (!end.is_empty() && start >= end) {
            return Ok((out, false));
        }
        let txn = self.db.begin_read()?;
        let t = txn.open_table(definition(table))?;
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let mut bytes = 0usize;
        for entry in t.range::<&[u8]>((Bound::Included(start), upper))? {
            let (k, v) = entry?;
            let size = k.value().len() + v.value().len();
            if out.len() >= limit || (!out.is_empty() && bytes + size > max_bytes) {
                return Ok((out, true));
            }
            bytes += size;
            out.push(decode(k.value(), v.value())?);
        }
        Ok((out, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, ts: u64, value: Option<&str>) -> Record {
        Record {
            key: key.as_bytes().to_vec(),
            ts,
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn the_deletion_queue_is_durable_ordered_and_keeps_the_first_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let (a, b, c) = (ChunkId([1; 16]), ChunkId([2; 16]), ChunkId([3; 16]));
        {
            let store = MetaStore::open(&path).unwrap();
            store.doom(&[c, a], 10).unwrap();
            store.doom(&[a, b], 20).unwrap();
        }
        let store = MetaStore::open(&path).unwrap();
        assert_eq!(
            store.doomed(None, 10).unwrap(),
            vec![(a, 10), (b, 20), (c, 10)]
        );
        assert_eq!(store.doomed(Some(a), 1).unwrap(), vec![(b, 20)]);
        store.undoom(&[b]).unwrap();
        assert_eq!(store.doomed(None, 10).unwrap(), vec![(a, 10), (c, 10)]);
    }

    #[test]
    fn merge_is_last_writer_wins_and_scan_is_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
        let t = Table::Objects;
        assert_eq!(
            store
                .merge(t, &[rec("b", 5, Some("new")), rec("a", 1, Some("x"))])
                .unwrap(),
            2
        );
        assert_eq!(store.merge(t, &[rec("b", 4, Some("old"))]).unwrap(), 0);
        assert_eq!(store.get(t, b"b").unwrap(), Some(rec("b", 5, Some("new"))));
        assert_eq!(store.merge(t, &[rec("b", 6, None)]).unwrap(), 1);
        assert_eq!(store.get(t, b"b").unwrap(), Some(rec("b", 6, None)));
        assert_eq!(store.get(Table::Buckets, b"b").unwrap(), None);

        store
            .merge(t, &[rec("c", 1, Some("c")), rec("d", 1, Some("d"))])
            .unwrap();
        let keys = |(v, _): (Vec<Record>, bool)| v.into_iter().map(|r| r.key).collect::<Vec<_>>();
        let all = usize::MAX;
        assert_eq!(
            keys(store.scan(t, b"", b"", 100, all).unwrap()),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        assert_eq!(
            keys(store.scan(t, b"b", b"d", 100, all).unwrap()),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
        let (page, more) = store.scan(t, b"b", b"", 1, all).unwrap();
        assert_eq!(keys((page, more)), vec![b"b".to_vec()]);
        assert!(more);
        assert!(store.scan(t, b"d", b"a", 10, all).unwrap().0.is_empty());
        // A byte bound cuts the page after the first record that fits, and
        // never below one record.
        let (page, more) = store.scan(t, b"", b"", 100, 1).unwrap();
        assert_eq!((page.len(), more), (1, true));
        let (page, more) = store.scan(t, b"c", b"", 100, 1).unwrap();
        assert_eq!((page.len(), more), (1, true));
        let (_, more) = store.scan(t, b"d", b"", 100, 1).unwrap();
        assert!(!more);
    }
}
