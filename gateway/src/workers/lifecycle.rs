//! The lifecycle worker: applies buckets' lifecycle rules (expiration,
//! noncurrent version expiration, aborting old multipart uploads).
//!
//! Where it runs: beside every storage node, and only the leading node acts
//! (see [`crate::workers`]), with the gateway's own tables and data path,
//! so an expiry frees chunks through the same code as a client's delete. Its
//! writes are idempotent (a purge of a version that is already gone changes
//! nothing), so two nodes that both believe they lead for a moment repeat
//! work but do not conflict.
//!
//! Bounded: one pass per interval, each looking at no more than
//! `records_per_pass` object and upload records; the next pass resumes where
//! the last one stopped.

use std::sync::Arc;
use std::time::Duration;

use chunkstore::{Record, Table};
use s3s::S3Result;

use crate::limits::{
    LIFECYCLE_INTERVAL, LIFECYCLE_RECORDS_PER_PASS, MAX_SCAN_ROUNDS, SCAN_BATCH, SYSTEM_PARTITION,
};
use crate::s3::Inner;
use crate::s3::completion::SeenUpload;
use crate::store::hlc::wall_ms;
use crate::store::model::{
    self, BucketRecord, LifecycleFilter, LifecycleRule, OBJECT_KEY_PREFIX, ObjectRecord,
    ObjectVersion, Purged, UploadState, Versioning,
};
use crate::store::table::Tables;
use crate::workers::Leader;

/// How often the worker runs and what a "day" of a rule is.
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// Time between passes.
    pub interval: Duration,
    /// The length of one day in rules (tests make it seconds). Ages are
    /// counted from the write, not rounded to midnight UTC as S3 does.
    pub day: Duration,
    /// Object and upload records one pass looks at, at most.
    pub records_per_pass: usize,
}

impl Default for LifecycleConfig {
    fn default() -> LifecycleConfig {
        LifecycleConfig {
            interval: LIFECYCLE_INTERVAL,
            day: Duration::from_secs(24 * 60 * 60),
            records_per_pass: LIFECYCLE_RECORDS_PER_PASS,
        }
    }
}

/// Whether an object (key, tags, size) is under a rule's filter.
pub(crate) fn filter_matches(
    filter: &LifecycleFilter,
    key: &str,
    tags: &[(String, String)],
    size: u64,
) -> bool {
    key.starts_with(&filter.prefix)
        && filter.tags.iter().all(|t| tags.contains(t))
        && filter.size_greater_than.is_none_or(|gt| size as i64 > gt)
        && filter.size_less_than.is_none_or(|lt| (size as i64) < lt)
}

/// Whether `days` days have passed since `since_ms`.
fn older_than(days: u32, since_ms: u64, now_ms: u64, day: Duration) -> bool {
    let age = (day.as_millis() as u64).saturating_mul(u64::from(days));
    now_ms >= since_ms.saturating_add(age)
}

/// What the rules do to one object record: the versions to purge, and the
/// delete marker to add (expiring the current version of a versioned bucket).
#[derive(Debug, Default, PartialEq)]
struct Plan {
    purge: Vec<ObjectVersion>,
    marker: Option<ObjectVersion>,
}

fn plan(
    rules: &[&LifecycleRule],
    versioning: Versioning,
    key: &str,
    record: &ObjectRecord,
    now_ms: u64,
    ts: u64,
    day: Duration,
) -> Plan {
    let mut plan = Plan::default();
    let Some((current, older)) = record.versions.split_last() else {
        return plan;
    };
    let applies = |rule: &LifecycleRule, v: &ObjectVersion| match &v.data {
        Some(d) => filter_matches(&rule.filter, key, &d.tags, d.size),
        // A delete marker has no tags nor size; a prefix still applies.
        None => rule.filter.tags.is_empty() && key.starts_with(&rule.filter.prefix),
    };

    // The current version.
    let expire = current.data.is_some()
        && rules.iter().any(|r| {
            applies(r, current)
                && (r
                    .expiration_days
                    .is_some_and(|d| older_than(d, current.last_modified_ms, now_ms, day))
                    || r.expiration_date_ms.is_some_and(|at| now_ms >= at))
        });
    if expire {
        match versioning {
            Versioning::Unversioned => plan.purge.push(current.clone()),
            Versioning::Enabled | Versioning::Suspended => {
                if versioning == Versioning::Suspended && current.version_id == model::NULL_VERSION
                {
                    plan.purge.push(current.clone());
                }
                plan.marker = Some(ObjectVersion {
                    version_id: versioning.new_version_id(ts),
                    ts,
                    last_modified_ms: now_ms,
                    data: None,
                    updated_ts: 0,
                });
            }
        }
    } else if current.data.is_none()
        && older.is_empty()
        && rules
            .iter()
            .any(|r| r.expired_object_delete_marker && applies(r, current))
    {
        // A delete marker with nothing left behind it.
        plan.purge.push(current.clone());
    }

    // Noncurrent versions: noncurrent since the next version was made.
    for (i, version) in older.iter().enumerate() {
        let since = record.versions[i + 1].last_modified_ms;
        let expired = rules.iter().any(|r| {
            applies(r, version)
                && r.noncurrent_days
                    .is_some_and(|d| older_than(d, since, now_ms, day))
        });
        if expired {
            plan.purge.push(version.clone());
        }
    }
    plan
}

/// Where the next pass starts: a bucket name, and a position in its
/// objects, then in its uploads.
#[derive(Clone, Debug, Default)]
struct Cursor {
    bucket: String,
    uploads: bool,
    position: Option<Vec<u8>>,
}

/// One page of bucket records from `position` (a key in the buckets' range)
/// on, and where the next page starts. Background workers walk buckets this
/// way, resuming at a bucket's key.
pub(crate) async fn bucket_page(
    tables: &Tables,
    position: &[u8],
) -> S3Result<(Vec<BucketRecord>, Option<Vec<u8>>)> {
    let (_, end) = model::bucket_range();
    let page = tables
        .scan(Table::Buckets, SYSTEM_PARTITION, position, &end, SCAN_BATCH)
        .await?;
    let buckets = page
        .records
        .iter()
        .filter_map(|r| r.value.as_deref())
        .filter_map(model::decode::<BucketRecord>)
        .collect();
    Ok((buckets, page.next))
}

/// Runs passes while `leader` says this node leads, until the task is dropped.
pub(crate) async fn run(inner: Arc<Inner>, config: LifecycleConfig, leader: Leader) {
    let mut cursor = Cursor::default();
    loop {
        tokio::time::sleep(config.interval).await;
        if !leader.leads() {
            cursor = Cursor::default();
            continue;
        }
        match pass(&inner, &config, cursor.clone()).await {
            Ok(next) => cursor = next,
            Err(e) => tracing::warn!(error = %e, "lifecycle pass failed; it is retried next time"),
        }
    }
}

/// One bounded pass; returns where the next one starts.
async fn pass(inner: &Inner, config: &LifecycleConfig, from: Cursor) -> S3Result<Cursor> {
    let mut budget = config.records_per_pass;
    let (start, _) = model::bucket_range();
    let mut position = model::bucket_key(&from.bucket).max(start);
    for _ in 0..MAX_SCAN_ROUNDS {
        let (buckets, next) = bucket_page(&inner.tables, &position).await?;
        for bucket in &buckets {
            let resume = (bucket.name == from.bucket).then(|| from.clone());
            if let Some(stopped) = bucket_pass(inner, config, bucket, resume, &mut budget).await? {
                return Ok(stopped);
            }
        }
        match next {
            Some(next) => position = next,
            None => break,
        }
    }
    // Every bucket was visited: start from the first again.
    Ok(Cursor::default())
}

/// Applies one bucket's rules to its objects, then its uploads. Returns a
/// cursor when the budget ran out inside this bucket.
async fn bucket_pass(
    inner: &Inner,
    config: &LifecycleConfig,
    bucket: &BucketRecord,
    resume: Option<Cursor>,
    budget: &mut usize,
) -> S3Result<Option<Cursor>> {
    let rules: Vec<&LifecycleRule> = bucket
        .lifecycle
        .iter()
        .flatten()
        .filter(|r| r.enabled)
        .collect();
    let work = BucketWork {
        inner,
        config,
        bucket,
        rules,
    };
    let partition = model::bucket_partition(&bucket.id);
    let prefix = model::object_prefix(&bucket.id);
    let end = model::prefix_end(&prefix);
    let resume = resume.unwrap_or_default();
    for uploads in [false, true] {
        // Every bucket's uploads are looked after; objects only by rules.
        if (resume.uploads || work.rules.is_empty()) && !uploads {
            continue;
        }
        let table = if uploads {
            Table::Uploads
        } else {
            Table::Objects
        };
        let mut position = match &resume.position {
            Some(p) if resume.uploads == uploads => p.clone(),
            _ => prefix.clone(),
        };
        loop {
            if *budget == 0 {
                return Ok(Some(Cursor {
                    bucket: bucket.name.clone(),
                    uploads,
                    position: Some(position),
                }));
            }
            let limit = (*budget).min(SCAN_BATCH as usize) as u32;
            let page = inner
                .tables
                .scan(table, partition, &position, &end, limit)
                .await?;
            *budget = budget.saturating_sub(page.records.len().max(1));
            for record in &page.records {
                let applied = if uploads {
                    work.tend_upload(record).await
                } else {
                    work.expire_object(record).await
                };
                if let Err(e) = applied {
                    tracing::warn!(bucket = %bucket.name, error = %e, "lifecycle action failed");
                }
            }
            match page.next {
                Some(next) => position = next,
                None => break,
            }
        }
    }
    Ok(None)
}

/// One bucket's enabled rules, applied to its records one at a time.
struct BucketWork<'a> {
    inner: &'a Inner,
    config: &'a LifecycleConfig,
    bucket: &'a BucketRecord,
    rules: Vec<&'a LifecycleRule>,
}

impl BucketWork<'_> {
    async fn expire_object(&self, read: &Record) -> S3Result<()> {
        let BucketWork {
            inner,
            config,
            bucket,
            ref rules,
        } = *self;
        let Some(record) = read
            .value
            .as_deref()
            .and_then(model::decode::<ObjectRecord>)
        else {
            return Ok(());
        };
        let Ok(key) = std::str::from_utf8(&read.key[OBJECT_KEY_PREFIX..]) else {
            return Ok(());
        };
        let now_ms = wall_ms();
        let ts = inner.tables.now();
        let plan = plan(
            rules,
            bucket.versioning,
            key,
            &record,
            now_ms,
            ts,
            config.day,
        );
        if plan == Plan::default() {
            return Ok(());
        }
        tracing::info!(bucket = %bucket.name, key, purged = plan.purge.len(), marker = plan.marker.is_some(), "lifecycle expiry");
        // Object records merge as a union of versions minus purges: purging
        // exactly the (version id, ts) read removes those versions and nothing
        // written since, so their chunks are unreferenced once this is durable.
        let purged = plan
            .purge
            .iter()
            .map(|v| Purged {
                version_id: v.version_id.clone(),
                ts: v.ts,
            })
            .collect();
        inner
            .change_record(bucket, key, ts, plan.marker.into_iter().collect(), purged)
            .await?;
        inner.delete_versions_data(plan.purge);
        Ok(())
    }

    async fn tend_upload(&self, read: &Record) -> S3Result<()> {
        let BucketWork {
            inner,
            config,
            bucket,
            ref rules,
        } = *self;
        let Some(seen) = SeenUpload::from_record(Some(read)) else {
            return Ok(());
        };
        if seen.upload.state != UploadState::Open {
            return inner.tend_upload(bucket, &seen).await;
        }
        let upload = seen.upload;
        let now_ms = wall_ms();
        let old = rules.iter().any(|r| {
            upload.key.starts_with(&r.filter.prefix)
                && r.abort_upload_days
                    .is_some_and(|d| older_than(d, upload.initiated_ms, now_ms, config.day))
        });
        if old {
            tracing::info!(bucket = %bucket.name, key = %upload.key, upload = %upload.upload_id, "lifecycle aborts upload");
            inner
                .abort_upload(bucket, &upload.key, &upload.upload_id)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::ObjectData;

    const DAY: Duration = Duration::from_secs(1);

    fn version(id: &str, ts: u64, modified_ms: u64, data: bool) -> ObjectVersion {
        ObjectVersion {
            version_id: id.into(),
            ts,
            last_modified_ms: modified_ms,
            data: data.then(ObjectData::default),
            updated_ts: 0,
        }
    }

    fn expire_after(days: u32, prefix: &str) -> LifecycleRule {
        LifecycleRule {
            id: "r".into(),
            enabled: true,
            filter: LifecycleFilter {
                prefix: prefix.into(),
                ..Default::default()
            },
            expiration_days: Some(days),
            noncurrent_days: Some(days),
            ..Default::default()
        }
    }

    #[test]
    fn filters_need_prefix_tags_and_size() {
        let f = LifecycleFilter {
            prefix: "logs/".into(),
            tags: vec![("a".into(), "1".into())],
            size_greater_than: Some(10),
            ..Default::default()
        };
        let tags = vec![("a".to_string(), "1".to_string()), ("b".into(), "2".into())];
        assert!(filter_matches(&f, "logs/x", &tags, 11));
        assert!(!filter_matches(&f, "logs/x", &tags, 10));
        assert!(!filter_matches(&f, "data/x", &tags, 11));
        assert!(!filter_matches(&f, "logs/x", &tags[1..], 11));
    }

    #[test]
    fn expiry_purges_in_unversioned_buckets_and_marks_in_versioned_ones() {
        let rule = expire_after(2, "logs/");
        let record = ObjectRecord {
            versions: vec![version("null", 1, 1_000, true)],
            ..Default::default()
        };
        let at = |now| {
            plan(
                &[&rule],
                Versioning::Unversioned,
                "logs/a",
                &record,
                now,
                9,
                DAY,
            )
        };
        assert_eq!(at(2_999), Plan::default());
        assert_eq!(at(3_000).purge, record.versions);
        let other = plan(
            &[&rule],
            Versioning::Unversioned,
            "data/a",
            &record,
            9_000,
            9,
            DAY,
        );
        assert_eq!(other, Plan::default());
        let versioned = plan(
            &[&rule],
            Versioning::Enabled,
            "logs/a",
            &record,
            9_000,
            9,
            DAY,
        );
        assert!(versioned.purge.is_empty());
        assert!(
            versioned
                .marker
                .is_some_and(|m| m.data.is_none() && m.ts == 9)
        );
    }

    #[test]
    fn noncurrent_versions_age_from_when_they_were_replaced() {
        let rule = expire_after(2, "");
        let record = ObjectRecord {
            versions: vec![
                version("v1", 1, 1_000, true),
                version("v2", 2, 5_000, true),
                version("v3", 3, 9_000, false),
            ],
            ..Default::default()
        };
        let p = plan(&[&rule], Versioning::Enabled, "k", &record, 7_500, 9, DAY);
        assert_eq!(p.purge, vec![record.versions[0].clone()]);
        assert!(p.marker.is_none());
    }
}
