//! ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation.

use std::time::{Duration, UNIX_EPOCH};

use chunkstore::{Condition, Record, Table};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::completion::SeenUpload;
use super::{Inner, requester};
use crate::acl::{AclGrant, Canned, Resource, is_public_read};
use crate::keys::permissions;
use crate::limits::{
    BUCKET_DELETE_LEASE, BUCKET_DELETE_POLL, MAX_SCAN_ROUNDS, MAX_UPDATE_ATTEMPTS, SCAN_BATCH,
    SYSTEM_PARTITION,
};
use crate::store::hlc::wall_ms;
use crate::store::model::{self, BucketRecord, ObjectRecord, UploadState, Versioning};

pub(crate) fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

pub(crate) fn owner(access_key: &str) -> Owner {
    Owner {
        display_name: Some(access_key.to_string()),
        id: Some(hex::encode(access_key.as_bytes())),
    }
}

/// Most buckets one ListBuckets page may ask for (S3's bound).
const MAX_LIST_BUCKETS: i32 = 10_000;

/// The region where S3 answers 200 to re-creating a bucket you own.
const LEGACY_REGION: &str = "us-east-1";

/// Whether a DeleteBucket that started at `since_ms` is past its lease at `now_ms`.
fn deletion_expired(since_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(since_ms) > BUCKET_DELETE_LEASE.as_millis() as u64
}

impl Inner {
    /// The bucket's record, or NoSuchBucket.
    pub(crate) async fn bucket(&self, name: &str) -> S3Result<BucketRecord> {
        let record = self
            .tables
            .get(Table::Buckets, SYSTEM_PARTITION, &model::bucket_key(name))
            .await?;
        record
            .and_then(|r| r.value)
            .and_then(|v| model::decode::<BucketRecord>(&v))
            .ok_or_else(|| s3_error!(NoSuchBucket, "bucket {name} does not exist"))
    }

    /// The bucket's record for a read-only operation, from a short cache
    /// (see `BUCKET_CACHE_TTL`); NoSuchBucket is never cached.
    pub(crate) async fn bucket_for_read(&self, name: &str) -> S3Result<BucketRecord> {
        if let Some(bucket) = self.bucket_cache.get(name) {
            return Ok(bucket);
        }
        let bucket = self.bucket(name).await?;
        self.bucket_cache.insert(name, bucket.clone());
        Ok(bucket)
    }

    /// Changes fields of a bucket's record (tags, configurations) by read,
    /// modify, write, checked on the system partition's primary: the write
    /// goes through only if the record is still the one read, so two
    /// concurrent changes never lose one (the later is made again on the
    /// record the earlier left) and a concurrent delete always wins.
    pub(crate) async fn update_bucket(
        &self,
        name: &str,
        change: impl Fn(&mut BucketRecord),
    ) -> S3Result<BucketRecord> {
        let key = model::bucket_key(name);
        let no_such_bucket = || s3_error!(NoSuchBucket, "bucket {name} does not exist");
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let read = self
                .tables
                .get(Table::Buckets, SYSTEM_PARTITION, &key)
                .await?
                .ok_or_else(no_such_bucket)?;
            let mut bucket = read
                .value
                .as_deref()
                .and_then(model::decode::<BucketRecord>)
                .ok_or_else(no_such_bucket)?;
            change(&mut bucket);
            let write = Record {
                key: key.clone(),
                ts: self.tables.now(),
                value: Some(model::encode(&bucket)),
            };
            let outcome = self
                .tables
                .conditional(
                    Table::Buckets,
                    SYSTEM_PARTITION,
                    Condition::Unchanged(read.ts),
                    write,
                )
                .await?;
            if outcome.written {
                self.cors_cache.forget(name);
                self.bucket_cache.forget(name);
                return Ok(bucket);
            }
            if outcome.record.is_none_or(|r| r.value.is_none()) {
                return Err(no_such_bucket());
            }
        }
        Err(s3_error!(
            ServiceUnavailable,
            "bucket {name} is being changed by many requests at once; retry"
        ))
    }

    /// Every bucket, by name (bounded: MAX_SCAN_ROUNDS pages).
    pub(crate) async fn all_buckets(&self) -> S3Result<Vec<BucketRecord>> {
        let (mut start, _) = model::bucket_range();
        let mut buckets = Vec::new();
        for _ in 0..MAX_SCAN_ROUNDS {
            let (page, next) = crate::workers::lifecycle::bucket_page(&self.tables, &start).await?;
            buckets.extend(page);
            match next {
                Some(next) => start = next,
                None => break,
            }
        }
        Ok(buckets)
    }

    /// Objects (keys whose current version is not a delete marker) and
    /// bytes (of every version) in a bucket, from a scan of at most
    /// `max_records` records; the flag says whether it saw them all.
    pub(crate) async fn bucket_usage(
        &self,
        bucket: &BucketRecord,
        max_records: usize,
    ) -> S3Result<(u64, u64, bool)> {
        let prefix = model::object_prefix(&bucket.id);
        let end = model::prefix_end(&prefix);
        let partition = model::bucket_partition(&bucket.id);
        let (mut objects, mut bytes, mut seen) = (0u64, 0u64, 0usize);
        let mut start = prefix;
        while seen < max_records {
            let page = self
                .tables
                .scan(Table::Objects, partition, &start, &end, SCAN_BATCH)
                .await?;
            seen += page.records.len().max(1);
            for record in page.records.iter().filter_map(|r| r.value.as_deref()) {
                let Some(o) = model::decode::<ObjectRecord>(record) else {
                    continue;
                };
                objects += u64::from(o.current_data().is_some());
                bytes += o
                    .versions
                    .iter()
                    .filter_map(|v| v.data.as_ref())
                    .map(|d| d.size)
                    .sum::<u64>();
            }
            match page.next {
                Some(next) => start = next,
                None => return Ok((objects, bytes, true)),
            }
        }
        Ok((objects, bytes, false))
    }

    pub(crate) async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let who = requester(&req)?;
        let input = &req.input;
        let max = match input.max_buckets {
            None => usize::MAX,
            Some(n) if (1..=MAX_LIST_BUCKETS).contains(&n) => n as usize,
            Some(n) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-buckets must be between 1 and {MAX_LIST_BUCKETS}, got {n}"
                ));
            }
        };
        // The token is the hex of the last name of the previous page.
        let after = match input
            .continuation_token
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            Some(token) => Some(
                hex::decode(token)
                    .ok()
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .ok_or_else(|| {
                        s3_error!(InvalidArgument, "the continuation token is not valid")
                    })?,
            ),
            None => None,
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let other_region = input
            .bucket_region
            .as_deref()
            .is_some_and(|r| r != self.region);
        // Root sees every bucket; another key those it has a permission on.
        let key = self.stored_key(&who).await?;
        let mut visible = self
            .all_buckets()
            .await?
            .into_iter()
            .filter(|b| !other_region && b.name.starts_with(&prefix))
            .filter(|b| after.as_ref().is_none_or(|a| &b.name > a))
            .filter(|b| key.as_ref().is_none_or(|k| permissions(k, b).any()))
            .peekable();
        let mut buckets = Vec::new();
        while buckets.len() < max {
            let Some(b) = visible.next() else { break };
            buckets.push(Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: Some(self.region.clone()),
            });
        }
        let continuation_token = visible
            .peek()
            .is_some()
            .then(|| {
                buckets
                    .last()
                    .and_then(|b| b.name.as_ref())
                    .map(hex::encode)
            })
            .flatten();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner_of(&who).await?),
            continuation_token,
            prefix: input.prefix.clone(),
        }))
    }

    pub(crate) async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let who = requester(&req)?;
        let acl = self
            .requested_acl(
                req.input.acl.as_ref().map(|a| a.as_str()),
                &req.headers,
                Resource::Bucket,
                &who,
                &who,
            )
            .await?
            .unwrap_or_else(|| Canned::Private.grants(&who, &who));
        let name = req.input.bucket;
        if !s3s::path::check_bucket_name(&name) {
            return Err(s3_error!(InvalidBucketName, "invalid bucket name {name}"));
        }
        if let Some(location) = req
            .input
            .create_bucket_configuration
            .and_then(|c| c.location_constraint)
        {
            let location = location.as_str();
            if !location.is_empty() && location != self.region {
                return Err(s3_error!(
                    InvalidLocationConstraint,
                    "this endpoint serves region {}, not {location}",
                    self.region
                ));
            }
        }
        match self.new_bucket(&name, who, acl).await {
            // S3 keeps its legacy answer in us-east-1: creating a bucket you
            // already own succeeds (other regions answer 409).
            Err(e)
                if e.code() == &s3s::S3ErrorCode::BucketAlreadyOwnedByYou
                    && self.region == LEGACY_REGION => {}
            other => {
                other?;
            }
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    /// Creates a bucket owned by `who`, or says why not (the name is valid).
    /// BucketAlreadyOwnedByYou when `who` owns it already.
    pub(crate) async fn new_bucket(
        &self,
        name: &str,
        who: String,
        acl: Vec<AclGrant>,
    ) -> S3Result<BucketRecord> {
        self.data.check_writable()?;
        match self.bucket(name).await {
            Ok(existing) if existing.owner == who => {
                return Err(s3_error!(BucketAlreadyOwnedByYou));
            }
            Ok(_) => return Err(s3_error!(BucketAlreadyExists)),
            Err(e) if e.code() == &s3s::S3ErrorCode::NoSuchBucket => {}
            Err(e) => return Err(e),
        }
        let record = BucketRecord {
            id: rand::random(),
            name: name.to_string(),
            created_ms: wall_ms(),
            owner: who,
            tags: Vec::new(),
            cors: None,
            lifecycle: None,
            public_read: is_public_read(&acl),
            acl: Some(acl),
            deleting_since_ms: None,
            versioning: Versioning::Unversioned,
            policy: None,
            public_access_block: None,
        };
        // Created through the system partition's primary, only if no bucket
        // of that name is live: of racing creates exactly one wins, and a
        // create can never replace an existing bucket's id (which would
        // orphan its objects).
        let write = Record {
            key: model::bucket_key(name),
            ts: self.tables.now(),
            value: Some(model::encode(&record)),
        };
        let outcome = self
            .tables
            .conditional(Table::Buckets, SYSTEM_PARTITION, Condition::Absent, write)
            .await?;
        if !outcome.written {
            let winner = outcome
                .record
                .and_then(|r| r.value)
                .and_then(|v| model::decode::<BucketRecord>(&v));
            return Err(match winner {
                Some(w) if w.owner == record.owner => s3_error!(BucketAlreadyOwnedByYou),
                _ => s3_error!(BucketAlreadyExists),
            });
        }
        Ok(record)
    }

    pub(crate) async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    pub(crate) async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket(&req.input.bucket).await?;
        // S3 answers an empty LocationConstraint for us-east-1.
        let location = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: location,
        }))
    }

    pub(crate) async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.drop_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    /// Deletes an empty bucket (BucketNotEmpty otherwise), aborting its
    /// multipart uploads in progress, as S3 does.
    ///
    /// Writes do not lock the bucket, so deletion is in two steps, each a
    /// conditional write of the bucket record on the system partition's
    /// primary: the record is marked as being deleted, then (the uploads
    /// aborted and no object found) removed if still the one marked. A
    /// write that lands meanwhile reads the record again once its own
    /// record is durable (`Inner::confirm_bucket`) and waits for the
    /// outcome: either the deletion saw its object (BucketNotEmpty; the
    /// write stands) or it did not, the bucket is gone and the write
    /// answers NoSuchBucket. So no write is acknowledged into a deleted
    /// bucket.
    pub(crate) async fn drop_bucket(&self, name: &str) -> S3Result<()> {
        let key = model::bucket_key(name);
        let no_such_bucket = || s3_error!(NoSuchBucket, "bucket {name} does not exist");
        let read = self
            .tables
            .get(Table::Buckets, SYSTEM_PARTITION, &key)
            .await?
            .ok_or_else(no_such_bucket)?;
        let mut bucket = read
            .value
            .as_deref()
            .and_then(model::decode::<BucketRecord>)
            .ok_or_else(no_such_bucket)?;
        if bucket
            .deleting_since_ms
            .is_some_and(|since| !deletion_expired(since, self.tables.now_ms()))
        {
            return Err(s3_error!(
                OperationAborted,
                "bucket {name} is being deleted by another request"
            ));
        }
        bucket.deleting_since_ms = Some(self.tables.now_ms());
        let marked = self
            .write_bucket_if_unchanged(&bucket, read.ts, Some(&bucket))
            .await?
            .ok_or_else(|| {
                s3_error!(
                    OperationAborted,
                    "bucket {name} changed while it was being deleted; retry"
                )
            })?;
        self.cors_cache.forget(name);
        self.bucket_cache.forget(name);
        let emptied = async {
            // Objects first: a bucket that keeps them keeps its uploads too.
            if self.has_objects(&bucket).await? {
                return Err(s3_error!(BucketNotEmpty));
            }
            self.abort_bucket_uploads(&bucket).await?;
            // Again: a Complete that had decided was finished just now, and
            // writes may have landed meanwhile.
            if self.has_objects(&bucket).await? {
                return Err(s3_error!(BucketNotEmpty));
            }
            Ok(())
        };
        if let Err(e) = emptied.await {
            // The bucket stays: unmark it (if that fails, the lease does).
            let mut kept = bucket.clone();
            kept.deleting_since_ms = None;
            if let Err(unmark) = self
                .write_bucket_if_unchanged(&kept, marked, Some(&kept))
                .await
            {
                tracing::warn!(bucket = name, error = %unmark, "cannot unmark a bucket");
            }
            return Err(e);
        }
        let removed = self
            .write_bucket_if_unchanged(&bucket, marked, None)
            .await?;
        self.cors_cache.forget(name);
        self.bucket_cache.forget(name);
        match removed {
            Some(_) => Ok(()),
            None => Err(s3_error!(
                OperationAborted,
                "bucket {name} changed while it was being deleted; retry"
            )),
        }
    }

    /// Writes `value` (None: a tombstone) as `bucket`'s record if the record
    /// is still the one stamped `seen_ts`; the new stamp, or None if refused.
    async fn write_bucket_if_unchanged(
        &self,
        bucket: &BucketRecord,
        seen_ts: u64,
        value: Option<&BucketRecord>,
    ) -> S3Result<Option<u64>> {
        let write = Record {
            key: model::bucket_key(&bucket.name),
            ts: self.tables.now(),
            value: value.map(model::encode),
        };
        let outcome = self
            .tables
            .conditional(
                Table::Buckets,
                SYSTEM_PARTITION,
                Condition::Unchanged(seen_ts),
                write,
            )
            .await?;
        Ok(outcome
            .written
            .then(|| outcome.record.map(|r| r.ts))
            .flatten())
    }

    /// Aborts every multipart upload of a bucket in progress; a Complete
    /// that had decided is finished (its object then keeps the bucket).
    async fn abort_bucket_uploads(&self, bucket: &BucketRecord) -> S3Result<()> {
        let prefix = model::object_prefix(&bucket.id);
        let end = model::prefix_end(&prefix);
        let partition = model::bucket_partition(&bucket.id);
        let mut start = prefix;
        for _ in 0..MAX_SCAN_ROUNDS {
            let page = self
                .tables
                .scan(Table::Uploads, partition, &start, &end, SCAN_BATCH)
                .await?;
            for record in &page.records {
                let Some(seen) = SeenUpload::from_record(Some(record)) else {
                    continue;
                };
                if matches!(seen.upload.state, UploadState::Completed(_)) {
                    continue;
                }
                let aborted = self
                    .abort_upload(bucket, &seen.upload.key, &seen.upload.upload_id)
                    .await;
                match aborted {
                    Ok(()) => {}
                    Err(e) if e.code() == &s3s::S3ErrorCode::NoSuchUpload => {}
                    Err(e) => return Err(e),
                }
            }
            match page.next {
                Some(next) => start = next,
                None => return Ok(()),
            }
        }
        Err(s3_error!(
            ServiceUnavailable,
            "bucket {} has too many uploads to abort at once; retry",
            bucket.name
        ))
    }

    /// After a write into `bucket` is durable: Ok if the bucket still
    /// stands (the write is in it), NoSuchBucket if it was deleted (the
    /// write is not reachable and must not be acknowledged). While a
    /// DeleteBucket is deciding, waits for its outcome, bounded by its
    /// lease; a deletion past its lease is cancelled, so it cannot remove
    /// the bucket after this write was confirmed.
    pub(crate) async fn confirm_bucket(&self, bucket: &BucketRecord) -> S3Result<()> {
        let key = model::bucket_key(&bucket.name);
        let gone = || {
            s3_error!(
                NoSuchBucket,
                "bucket {} was deleted while this write was made",
                bucket.name
            )
        };
        let deadline = tokio::time::Instant::now() + BUCKET_DELETE_LEASE + BUCKET_DELETE_POLL * 20;
        loop {
            let read = self
                .tables
                .get(Table::Buckets, SYSTEM_PARTITION, &key)
                .await?
                .ok_or_else(gone)?;
            let current = read
                .value
                .as_deref()
                .and_then(model::decode::<BucketRecord>)
                .filter(|b| b.id == bucket.id)
                .ok_or_else(gone)?;
            let Some(since) = current.deleting_since_ms else {
                return Ok(());
            };
            if deletion_expired(since, self.tables.now_ms()) {
                let mut kept = current.clone();
                kept.deleting_since_ms = None;
                if self
                    .write_bucket_if_unchanged(&kept, read.ts, Some(&kept))
                    .await?
                    .is_some()
                {
                    return Ok(());
                }
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(s3_error!(
                    ServiceUnavailable,
                    "bucket {} is being deleted; retry",
                    bucket.name
                ));
            }
            tokio::time::sleep(BUCKET_DELETE_POLL).await;
        }
    }

    async fn has_objects(&self, bucket: &BucketRecord) -> S3Result<bool> {
        let prefix = model::object_prefix(&bucket.id);
        let end = model::prefix_end(&prefix);
        let partition = model::bucket_partition(&bucket.id);
        let mut start = prefix;
        for _ in 0..MAX_SCAN_ROUNDS {
            let page = self
                .tables
                .scan(Table::Objects, partition, &start, &end, SCAN_BATCH)
                .await?;
            let any = page.records.iter().any(|r| {
                r.value
                    .as_deref()
                    .and_then(model::decode::<ObjectRecord>)
                    .is_some_and(|o| !o.versions.is_empty())
            });
            if any {
                return Ok(true);
            }
            match page.next {
                Some(next) => start = next,
                None => return Ok(false),
            }
        }
        // Bounded walk over deleted keys ended without an answer; refuse
        // rather than drop a bucket that might hold objects.
        Err(s3_error!(
            ServiceUnavailable,
            "bucket emptiness check took too long; retry"
        ))
    }
}

/// Buckets as the admin API sees them (it acts as the root key).
impl super::Gateway {
    pub(crate) async fn all_buckets(&self) -> S3Result<Vec<BucketRecord>> {
        self.inner.all_buckets().await
    }

    pub(crate) async fn bucket_usage(
        &self,
        bucket: &BucketRecord,
        max_records: usize,
    ) -> S3Result<(u64, u64, bool)> {
        self.inner.bucket_usage(bucket, max_records).await
    }

    /// Creates a bucket owned by the root key.
    pub(crate) async fn create_bucket_as_root(&self, name: &str) -> S3Result<BucketRecord> {
        if !s3s::path::check_bucket_name(name) {
            return Err(s3_error!(InvalidBucketName, "invalid bucket name {name}"));
        }
        let root = self.inner.root_access_key.clone();
        let acl = Canned::Private.grants(&root, &root);
        self.inner.new_bucket(name, root, acl).await
    }

    pub(crate) async fn delete_bucket(&self, name: &str) -> S3Result<()> {
        self.inner.drop_bucket(name).await
    }
}
