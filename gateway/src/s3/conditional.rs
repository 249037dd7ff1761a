//! Conditional writes: `If-None-Match: *` and `If-Match: <etag>` on
//! PutObject and CompleteMultipartUpload. They are checked once before any
//! data is stored (a cheap early refusal) and again, atomically with the
//! write, on the partition's primary (see `Tables::conditional`), so that of
//! N racing creates of one key exactly one wins, whichever gateway each used.

use chunkstore::{Condition, Record, Table};
use s3s::dto::ETagCondition;
use s3s::{S3Result, s3_error};

use super::Inner;
use crate::store::model::{self, BucketRecord, ObjectRecord};

/// What a conditional write expects of the key's current version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WriteCondition {
    /// `If-None-Match: *`: no current object (a delete marker counts as none).
    Absent,
    /// `If-Match: <etag>`: the current object has this ETag.
    ETag(String),
}

impl WriteCondition {
    /// The condition of a write request, if it has one. S3 takes only `*` in
    /// If-None-Match and only an ETag in If-Match on writes.
    pub fn from_request(
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
    ) -> S3Result<Option<WriteCondition>> {
        match (if_match, if_none_match) {
            (None, None) => Ok(None),
            (None, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::Absent)),
            (Some(ETagCondition::ETag(e)), None) => Ok(Some(WriteCondition::ETag(
                e.value().trim_matches('"').to_string(),
            ))),
            _ => Err(s3_error!(
                NotImplemented,
                "writes take If-None-Match: * or If-Match: <etag>, not both and nothing else"
            )),
        }
    }

    /// The condition as a Complete's decision stores it.
    pub fn from_condition(condition: &Condition) -> WriteCondition {
        match condition {
            Condition::ETag(etag) => WriteCondition::ETag(etag.clone()),
            Condition::Absent | Condition::Unchanged(_) => WriteCondition::Absent,
        }
    }

    pub fn to_condition(&self) -> Condition {
        match self {
            WriteCondition::Absent => Condition::Absent,
            WriteCondition::ETag(e) => Condition::ETag(e.clone()),
        }
    }

    /// Checks the condition against the current ETag (None: no object).
    /// `raced` says the write already passed the early check, so an object
    /// that vanished since was deleted by a concurrent request.
    fn check(&self, current_etag: Option<&str>, raced: bool) -> S3Result<()> {
        match (self, current_etag) {
            (WriteCondition::Absent, None) => Ok(()),
            (WriteCondition::Absent, Some(_)) => Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold (If-None-Match)"
            )),
            (WriteCondition::ETag(_), None) if raced => Err(s3_error!(
                ConditionalRequestConflict,
                "the object was deleted while this conditional write was in progress; retry"
            )),
            (WriteCondition::ETag(_), None) => Err(s3_error!(NoSuchKey)),
            (WriteCondition::ETag(want), Some(have)) if want == have => Ok(()),
            (WriteCondition::ETag(_), Some(_)) => Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold (If-Match)"
            )),
        }
    }
}

fn current_etag(record: &ObjectRecord) -> Option<&str> {
    record
        .current_data()
        .and_then(|v| v.data.as_ref())
        .map(|d| d.etag.as_str())
}

impl Inner {
    /// The early check, before a body is stored: a write that cannot
    /// succeed is refused without storing anything.
    pub(crate) async fn precheck(
        &self,
        bucket: &BucketRecord,
        key: &str,
        condition: Option<&WriteCondition>,
    ) -> S3Result<()> {
        let Some(condition) = condition else {
            return Ok(());
        };
        let (_, record) = self.object_record(bucket, key).await?;
        condition.check(current_etag(&record), false)
    }

    /// Writes `write` if `condition` holds, atomically on the partition's
    /// primary. `seen` is the record as read at quorum before (the early
    /// check is made on it).
    pub(crate) async fn write_if(
        &self,
        partition: u16,
        condition: &WriteCondition,
        seen: Option<Record>,
        write: Record,
    ) -> S3Result<()> {
        let seen_record = decoded(seen.as_ref());
        condition.check(current_etag(&seen_record), false)?;
        let outcome = self
            .tables
            .conditional(Table::Objects, partition, condition.to_condition(), write)
            .await?;
        if outcome.written {
            return Ok(());
        }
        let current = decoded(outcome.record.as_ref());
        condition.check(current_etag(&current), true)?;
        // Refused although the current ETag matches: a concurrent write
        // changed the object in between.
        Err(s3_error!(
            ConditionalRequestConflict,
            "a concurrent write changed the object; retry"
        ))
    }
}

fn decoded(record: Option<&Record>) -> ObjectRecord {
    record
        .and_then(|r| r.value.as_deref())
        .and_then(model::decode::<ObjectRecord>)
        .unwrap_or_default()
}
