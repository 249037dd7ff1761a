//! Put/Get/DeleteBucketLifecycleConfiguration: the rules, checked as S3
//! checks them and stored in the bucket record. `crate::workers::lifecycle` applies them.

use std::collections::HashSet;

use s3s::dto::{self, *};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::bucket::timestamp;
use super::tagging::{from_tag_set, to_tag_set};
use super::{Gateway, Inner};
use crate::limits::{MAX_LIFECYCLE_RULES, MAX_RULE_ID_LEN};
use crate::store::model::{self, LifecycleFilter};
use crate::workers::lifecycle::LifecycleConfig;

const MS_PER_DAY: i128 = 86_400_000;

/// A positive day count, or InvalidArgument naming the field as S3 does.
fn positive_days(days: Option<i32>, field: &str) -> S3Result<u32> {
    match days {
        Some(d) if d > 0 => Ok(d as u32),
        _ => Err(s3_error!(
            InvalidArgument,
            "{field} must be a positive integer"
        )),
    }
}

/// `<Filter>` (exactly one condition, or `<And>`), or the legacy `<Prefix>`.
fn filter_from(
    filter: Option<LifecycleRuleFilter>,
    prefix: Option<String>,
) -> S3Result<LifecycleFilter> {
    let malformed = || {
        s3_error!(
            MalformedXML,
            "a rule has exactly one of Filter and Prefix; a Filter has one condition or And"
        )
    };
    let f = match (filter, prefix) {
        (Some(_), Some(_)) | (None, None) => return Err(malformed()),
        (None, Some(prefix)) => {
            return Ok(LifecycleFilter {
                prefix,
                legacy_prefix: true,
                ..Default::default()
            });
        }
        (Some(f), None) => f,
    };
    let conditions = [
        f.and.is_some(),
        f.prefix.is_some(),
        f.tag.is_some(),
        f.object_size_greater_than.is_some(),
        f.object_size_less_than.is_some(),
    ];
    if conditions.iter().filter(|c| **c).count() > 1 {
        return Err(malformed());
    }
    let mut out = LifecycleFilter {
        prefix: f.prefix.unwrap_or_default(),
        tags: from_tag_set(f.tag.into_iter().collect(), usize::MAX)?,
        size_greater_than: f.object_size_greater_than,
        size_less_than: f.object_size_less_than,
        legacy_prefix: false,
    };
    if let Some(and) = f.and {
        out.prefix = and.prefix.unwrap_or_default();
        out.tags = from_tag_set(and.tags.unwrap_or_default(), usize::MAX)?;
        out.size_greater_than = and.object_size_greater_than;
        out.size_less_than = and.object_size_less_than;
    }
    if let (Some(gt), Some(lt)) = (out.size_greater_than, out.size_less_than)
        && gt >= lt
    {
        return Err(s3_error!(
            InvalidArgument,
            "ObjectSizeGreaterThan must be less than ObjectSizeLessThan"
        ));
    }
    Ok(out)
}

fn filter_to(f: &LifecycleFilter) -> (Option<LifecycleRuleFilter>, Option<String>) {
    if f.legacy_prefix {
        return (None, Some(f.prefix.clone()));
    }
    let prefix = (!f.prefix.is_empty()).then(|| f.prefix.clone());
    let conditions = usize::from(prefix.is_some())
        + f.tags.len()
        + usize::from(f.size_greater_than.is_some())
        + usize::from(f.size_less_than.is_some());
    let filter = if conditions > 1 {
        LifecycleRuleFilter {
            and: Some(LifecycleRuleAndOperator {
                prefix,
                tags: (!f.tags.is_empty()).then(|| to_tag_set(&f.tags)),
                object_size_greater_than: f.size_greater_than,
                object_size_less_than: f.size_less_than,
            }),
            ..Default::default()
        }
    } else {
        LifecycleRuleFilter {
            // An empty filter (every object) is answered as an empty Prefix, as S3 does.
            prefix: prefix.or_else(|| (conditions == 0).then(String::new)),
            tag: to_tag_set(&f.tags).into_iter().next(),
            object_size_greater_than: f.size_greater_than,
            object_size_less_than: f.size_less_than,
            ..Default::default()
        }
    };
    (Some(filter), None)
}

/// Checks one rule as S3 does and turns it into a stored rule.
fn rule_from(r: dto::LifecycleRule) -> S3Result<model::LifecycleRule> {
    let enabled = match r.status.as_str() {
        ExpirationStatus::ENABLED => true,
        ExpirationStatus::DISABLED => false,
        other => return Err(s3_error!(MalformedXML, "unknown rule Status {other}")),
    };
    let id = r.id.unwrap_or_else(model::random_id);
    if id.len() > MAX_RULE_ID_LEN {
        return Err(s3_error!(
            InvalidArgument,
            "ID length should not exceed allowed limit of {MAX_RULE_ID_LEN}"
        ));
    }
    if r.transitions.is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .is_some_and(|t| !t.is_empty())
    {
        return Err(s3_error!(
            NotImplemented,
            "transitions are not supported: Flexdrive has one storage class"
        ));
    }
    let filter = filter_from(r.filter, r.prefix)?;
    let mut rule = model::LifecycleRule {
        id,
        enabled,
        filter,
        ..Default::default()
    };
    if let Some(e) = r.expiration {
        let marker = e.expired_object_delete_marker.unwrap_or(false);
        match (e.days, e.date, marker) {
            (Some(_), Some(_), _) | (None, None, false) => {
                return Err(s3_error!(
                    MalformedXML,
                    "Expiration has exactly one of Days, Date and ExpiredObjectDeleteMarker"
                ));
            }
            (Some(_), None, true) | (None, Some(_), true) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a Lifecycle Expiration Policy"
                ));
            }
            (days @ Some(_), None, false) => {
                rule.expiration_days = Some(positive_days(days, "'Days' for Expiration action")?);
            }
            (None, Some(date), false) => {
                let date = time::OffsetDateTime::from(date);
                let ms = date.unix_timestamp_nanos() / 1_000_000;
                if ms % MS_PER_DAY != 0 || ms < 0 {
                    return Err(s3_error!(InvalidArgument, "'Date' must be at midnight GMT"));
                }
                rule.expiration_date_ms = Some(ms as u64);
            }
            (None, None, true) => rule.expired_object_delete_marker = true,
        }
    }
    if let Some(n) = r.noncurrent_version_expiration {
        if n.newer_noncurrent_versions.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "NewerNoncurrentVersions is not supported"
            ));
        }
        rule.noncurrent_days = Some(positive_days(
            n.noncurrent_days,
            "'NoncurrentDays' for NoncurrentVersionExpiration action",
        )?);
    }
    if let Some(a) = r.abort_incomplete_multipart_upload {
        if !rule.filter.tags.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "AbortIncompleteMultipartUpload cannot be specified with Tags."
            ));
        }
        rule.abort_upload_days = Some(positive_days(
            a.days_after_initiation,
            "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action",
        )?);
    }
    let has_action = rule.expiration_days.is_some()
        || rule.expiration_date_ms.is_some()
        || rule.expired_object_delete_marker
        || rule.noncurrent_days.is_some()
        || rule.abort_upload_days.is_some();
    if !has_action {
        return Err(s3_error!(
            InvalidArgument,
            "At least one action needs to be specified in a rule"
        ));
    }
    Ok(rule)
}

fn rule_to(r: &model::LifecycleRule) -> dto::LifecycleRule {
    let (filter, prefix) = filter_to(&r.filter);
    let expiration = (r.expiration_days.is_some()
        || r.expiration_date_ms.is_some()
        || r.expired_object_delete_marker)
        .then(|| LifecycleExpiration {
            days: r.expiration_days.map(|d| d as i32),
            date: r.expiration_date_ms.map(timestamp),
            expired_object_delete_marker: r.expired_object_delete_marker.then_some(true),
        });
    dto::LifecycleRule {
        id: Some(r.id.clone()),
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        filter,
        prefix,
        expiration,
        noncurrent_version_expiration: r.noncurrent_days.map(|d| NoncurrentVersionExpiration {
            noncurrent_days: Some(d as i32),
            newer_noncurrent_versions: None,
        }),
        abort_incomplete_multipart_upload: r.abort_upload_days.map(|d| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: Some(d as i32),
            }
        }),
        transitions: None,
        noncurrent_version_transitions: None,
    }
}

impl Inner {
    pub(crate) async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        let rules = input
            .lifecycle_configuration
            .map(|c| c.rules)
            .unwrap_or_default();
        if rules.is_empty() || rules.len() > MAX_LIFECYCLE_RULES {
            return Err(s3_error!(
                MalformedXML,
                "a lifecycle configuration has 1 to {MAX_LIFECYCLE_RULES} rules"
            ));
        }
        let rules = rules
            .into_iter()
            .map(rule_from)
            .collect::<S3Result<Vec<_>>>()?;
        let mut ids = HashSet::new();
        if !rules.iter().all(|r| ids.insert(r.id.as_str())) {
            return Err(s3_error!(
                InvalidArgument,
                "Rule ID must be unique. Found same ID for more than one rule"
            ));
        }
        self.update_bucket(&input.bucket, |b| b.lifecycle = Some(rules.clone()))
            .await?;
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(crate) async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let rules = bucket.lifecycle.ok_or_else(|| {
            s3_error!(
                NoSuchLifecycleConfiguration,
                "The lifecycle configuration does not exist"
            )
        })?;
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(rules.iter().map(rule_to).collect()),
            ..Default::default()
        }))
    }

    pub(crate) async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.update_bucket(&req.input.bucket, |b| b.lifecycle = None)
            .await?;
        Ok(S3Response::new(DeleteBucketLifecycleOutput {}))
    }
}

impl Gateway {
    /// The background worker that applies the buckets' rules while
    /// `leader` leads; runs until dropped.
    pub(crate) fn lifecycle_worker(
        &self,
        config: LifecycleConfig,
        leader: crate::workers::Leader,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        crate::workers::lifecycle::run(self.inner.clone(), config, leader)
    }
}
