//! Access keys other than root: kept in the replicated `keys` table (system
//! partition), looked up by every request through a short-lived cache, and
//! managed through the admin API.

use std::sync::Arc;

use chunkstore::{Condition, Record, Table};
use s3s::{S3Result, s3_error};

use crate::cache::TtlCache;
use crate::limits::{
    KEY_CACHE_ENTRIES, KEY_CACHE_TTL, MAX_ACCESS_KEY_LEN, MAX_KEY_NAME_LEN, MAX_UPDATE_ATTEMPTS,
    SYSTEM_PARTITION,
};
use crate::store::hlc::wall_ms;
use crate::store::model::{self, BucketGrant, BucketRecord, KeyRecord};
use crate::store::table::Tables;

/// What a key may do on a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    pub owner: bool,
}

impl Permissions {
    pub fn any(self) -> bool {
        self.read || self.write || self.owner
    }
}

/// A key's permissions on a bucket: everything on the buckets it created,
/// its grant on the others.
pub fn permissions(key: &KeyRecord, bucket: &BucketRecord) -> Permissions {
    if bucket.owner == key.access_key {
        return Permissions {
            read: true,
            write: true,
            owner: true,
        };
    }
    key.grants
        .iter()
        .find(|g| g.bucket_id == bucket.id)
        .map(|g| Permissions {
            read: g.read,
            write: g.write,
            owner: g.owner,
        })
        .unwrap_or_default()
}

/// The `keys` table with a cache in front; cheap to share behind an `Arc`.
pub struct KeyStore {
    tables: Tables,
    /// Unknown keys are cached too (as None): a client with a wrong key
    /// should not cost a quorum read per request.
    cache: TtlCache<Option<Arc<KeyRecord>>>,
}

impl KeyStore {
    pub fn new(tables: Tables) -> KeyStore {
        KeyStore {
            tables,
            cache: TtlCache::new(KEY_CACHE_TTL, KEY_CACHE_ENTRIES),
        }
    }

    /// The key's record (at most `KEY_CACHE_TTL` old), or None if unknown.
    pub async fn get(&self, access_key: &str) -> S3Result<Option<Arc<KeyRecord>>> {
        if access_key.is_empty() || access_key.len() > MAX_ACCESS_KEY_LEN {
            return Ok(None);
        }
        if let Some(hit) = self.cache.get(access_key) {
            return Ok(hit);
        }
        let record = self.read(access_key).await?.map(Arc::new);
        self.cache.insert(access_key, record.clone());
        Ok(record)
    }

    /// Reads the key's record at quorum, bypassing the cache (with its
    /// timestamp, for a change that must not lose a concurrent one).
    async fn read(&self, access_key: &str) -> S3Result<Option<KeyRecord>> {
        Ok(self.read_stamped(access_key).await?.map(|(_, k)| k))
    }

    async fn read_stamped(&self, access_key: &str) -> S3Result<Option<(u64, KeyRecord)>> {
        Ok(self
            .tables
            .get(
                Table::Keys,
                SYSTEM_PARTITION,
                &model::access_key_key(access_key),
            )
            .await?
            .and_then(|r| Some((r.ts, model::decode::<KeyRecord>(r.value.as_deref()?)?))))
    }

    /// Writes the key's record (None: deletes it) if the stored one is still
    /// the one read at `read_ts` (0: none), through the system partition's
    /// primary: a grant racing a deletion never brings the key back, and two
    /// grants never lose one. False when another change got in first.
    async fn write_if_unchanged(
        &self,
        access_key: &str,
        read_ts: u64,
        record: Option<&KeyRecord>,
    ) -> S3Result<bool> {
        let write = Record {
            key: model::access_key_key(access_key),
            ts: self.tables.now(),
            value: record.map(model::encode),
        };
        let outcome = self
            .tables
            .conditional(
                Table::Keys,
                SYSTEM_PARTITION,
                Condition::Unchanged(read_ts),
                write,
            )
            .await?;
        self.cache.forget(access_key);
        Ok(outcome.written)
    }

    /// Makes a new key with a random access key and secret. It may create
    /// buckets; it has no permission on anyone else's.
    pub async fn create(&self, name: &str) -> S3Result<KeyRecord> {
        check_name(name)?;
        let record = KeyRecord {
            access_key: format!("FK{}", hex::encode_upper(rand::random::<[u8; 12]>())),
            secret: hex::encode(rand::random::<[u8; 20]>()),
            name: name.to_string(),
            created_ms: wall_ms(),
            allow_create_bucket: true,
            grants: Vec::new(),
        };
        if !self
            .write_if_unchanged(&record.access_key, 0, Some(&record))
            .await?
        {
            // 96 random bits collided: not in this universe.
            return Err(s3_error!(InternalError, "access key collision; retry"));
        }
        Ok(record)
    }

    /// Every stored key, in access key order.
    pub async fn list(&self) -> S3Result<Vec<KeyRecord>> {
        let (start, end) = model::access_key_range();
        self.tables
            .scan_all(Table::Keys, SYSTEM_PARTITION, &start, &end)
            .await
    }

    /// Deletes a key; false if there was none.
    pub async fn delete(&self, access_key: &str) -> S3Result<bool> {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some((ts, _)) = self.read_stamped(access_key).await? else {
                return Ok(false);
            };
            if self.write_if_unchanged(access_key, ts, None).await? {
                return Ok(true);
            }
        }
        Err(busy(access_key))
    }

    /// Adds permissions on a bucket to a key (what it had stays). Returns
    /// the updated record, or None if the key does not exist.
    pub async fn allow(
        &self,
        access_key: &str,
        bucket: &BucketRecord,
        add: Permissions,
    ) -> S3Result<Option<KeyRecord>> {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some((ts, mut record)) = self.read_stamped(access_key).await? else {
                return Ok(None);
            };
            let had = permissions(&record, bucket);
            record.grants.retain(|g| g.bucket_id != bucket.id);
            record.grants.push(BucketGrant {
                bucket_id: bucket.id,
                bucket: bucket.name.clone(),
                read: had.read || add.read,
                write: had.write || add.write,
                owner: had.owner || add.owner,
            });
            if self
                .write_if_unchanged(access_key, ts, Some(&record))
                .await?
            {
                return Ok(Some(record));
            }
        }
        Err(busy(access_key))
    }
}

fn busy(access_key: &str) -> s3s::S3Error {
    s3_error!(
        ServiceUnavailable,
        "key {access_key} is being changed by many requests at once; retry"
    )
}

fn check_name(name: &str) -> S3Result<()> {
    if name.trim().is_empty() || name.len() > MAX_KEY_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(s3_error!(
            InvalidArgument,
            "a key name is 1 to {MAX_KEY_NAME_LEN} bytes without control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bucket record built through its encoded form, so this test need
    /// not list every field BucketRecord grows.
    fn bucket(owner: &str, id: u8) -> BucketRecord {
        #[derive(serde::Serialize)]
        struct Minimal<'a> {
            id: [u8; 16],
            name: &'a str,
            created_ms: u64,
            owner: &'a str,
        }
        let minimal = Minimal {
            id: [id; 16],
            name: "b",
            created_ms: 0,
            owner,
        };
        model::decode(&model::encode(&minimal)).unwrap()
    }

    #[test]
    fn creators_own_their_buckets_and_others_need_a_grant() {
        let mut key = KeyRecord {
            access_key: "K".into(),
            secret: "s".into(),
            name: "n".into(),
            created_ms: 0,
            allow_create_bucket: true,
            grants: Vec::new(),
        };
        let own = bucket("K", 1);
        let other = bucket("root", 2);
        assert!(permissions(&key, &own).owner);
        assert!(!permissions(&key, &other).any());
        key.grants.push(BucketGrant {
            bucket_id: [2; 16],
            bucket: "b".into(),
            read: true,
            ..Default::default()
        });
        let p = permissions(&key, &other);
        assert!(p.read && !p.write && !p.owner);
    }

    #[test]
    fn key_names_are_checked() {
        assert!(check_name("backup job").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(MAX_KEY_NAME_LEN + 1)).is_err());
    }
}
