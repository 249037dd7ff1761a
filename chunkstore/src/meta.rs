//! Metadata records in redb: one redb table per [`Table`], keys are bytes,
//! values are (timestamp, optional value) merged by last writer wins.

use std::ops::Bound;

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::wire::{Record, Table};

/// A stored value: (ts, value); `None` is a tombstone.
type Stored = (u64, Option<Vec<u8>>);

pub struct MetaStore {
    db: Database,
}

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
        txn.commit()?;
        Ok(MetaStore { db })
    }

    /// Merges records in one durable transaction; returns how many changed.
    pub fn merge(&self, table: Table, records: &[Record]) -> anyhow::Result<usize> {
        let txn = self.db.begin_write()?;
        let mut changed = 0;
        {
            let mut t = txn.open_table(definition(table))?;
            for record in records {
                let current = match t.get(record.key.as_slice())? {
                    Some(raw) => Some(decode(&record.key, raw.value())?),
                    None => None,
                };
                if current.is_some_and(|c| !record.wins_over(&c)) {
                    continue;
                }
                let stored = postcard::to_stdvec(&(record.ts, &record.value))?;
                t.insert(record.key.as_slice(), stored.as_slice())?;
                changed += 1;
            }
        }
        txn.commit()?;
        Ok(changed)
    }

    pub fn get(&self, table: Table, key: &[u8]) -> anyhow::Result<Option<Record>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(definition(table))?;
        match t.get(key)? {
            Some(raw) => Ok(Some(decode(key, raw.value())?)),
            None => Ok(None),
        }
    }

    /// `start <= key < end` (empty `end`: unbounded), at most `limit`.
    pub fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> anyhow::Result<Vec<Record>> {
        let mut out = Vec::new();
        if limit == 0 || (!end.is_empty() && start >= end) {
            return Ok(out);
        }
        let txn = self.db.begin_read()?;
        let t = txn.open_table(definition(table))?;
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        for entry in t.range::<&[u8]>((Bound::Included(start), upper))? {
            let (k, v) = entry?;
            out.push(decode(k.value(), v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
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
        let keys = |v: Vec<Record>| v.into_iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(
            keys(store.scan(t, b"", b"", 100).unwrap()),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        assert_eq!(
            keys(store.scan(t, b"b", b"d", 100).unwrap()),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            keys(store.scan(t, b"b", b"", 1).unwrap()),
            vec![b"b".to_vec()]
        );
        assert!(store.scan(t, b"d", b"a", 10).unwrap().is_empty());
    }
}
