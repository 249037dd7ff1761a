//! The multipart upload state machine.
//!
//! An upload is Open, then Completing (a Complete is choosing its parts),
//! then Committing (the decision is made: one object version), then
//! Completed; or Aborted. Every change of state is a conditional write of
//! the upload record on its partition's primary (`Condition::Unchanged`),
//! so of two requests that change one upload at the same moment exactly one
//! does, and the other sees what it did. A part lands only through a write
//! guarded by the upload record being unchanged and open
//! (`Tables::guarded`), serialised with those changes on the same primary:
//! once an upload is Completing no part lands, and the parts a Complete
//! reads then are the parts it commits.
//!
//! A Committing upload is finished by whoever finds it (the Complete that
//! decided, its retry, an Abort, the lifecycle worker): the version is
//! written (again: the same version, so a second write changes nothing),
//! the parts forgotten and the chunks of parts not used freed, then the
//! upload marked Completed. Completed and Aborted uploads are remembered for
//! [`UPLOAD_OUTCOME_KEEP`] so that a repeated Complete answers the same
//! object and a repeated Abort succeeds; Complete of an aborted upload, and
//! Abort or UploadPart of a completed one, answer NoSuchUpload.
//!
//! A Complete whose gateway dies while choosing leaves the upload
//! Completing: after [`COMPLETING_LEASE`] anyone reopens it (conditionally,
//! so a Complete still running then finds its decision refused and starts
//! again).

use std::collections::HashSet;

use chunkstore::{ChunkId, Condition, Record, Table};
use s3s::{S3ErrorCode, S3Result, s3_error};

use super::Inner;
use super::conditional::WriteCondition;
use crate::limits::{COMPLETING_LEASE, MAX_UPLOAD_STEPS, UPLOAD_OUTCOME_KEEP, UPLOAD_STATE_POLL};
use crate::store::model::{
    self, BucketRecord, Completion, ObjectRecord, ObjectVersion, PartRecord, UploadRecord,
    UploadState,
};

/// What a CompleteMultipartUpload asks.
pub(crate) struct CompleteRequest<'a> {
    pub key: &'a str,
    pub upload_id: &'a str,
    pub chosen: &'a [s3s::dto::CompletedPart],
    /// The parts named: number, and ETag if given (to recognise a Complete
    /// repeated after it succeeded).
    pub named: &'a [(i32, Option<String>)],
    pub condition: Option<&'a WriteCondition>,
    pub input: &'a s3s::dto::CompleteMultipartUploadInput,
}

/// An upload record with the timestamp it was read at.
#[derive(Clone, Debug)]
pub(crate) struct SeenUpload {
    pub upload: UploadRecord,
    pub ts: u64,
}

impl SeenUpload {
    pub fn from_record(record: Option<&Record>) -> Option<SeenUpload> {
        let record = record?;
        let upload = model::decode::<UploadRecord>(record.value.as_deref()?)?;
        Some(SeenUpload {
            upload,
            ts: record.ts,
        })
    }

    /// Whether parts may still be listed and uploaded (a Complete choosing
    /// them may yet give the upload back).
    pub fn in_progress(&self) -> bool {
        matches!(
            self.upload.state,
            UploadState::Open | UploadState::Completing { .. }
        )
    }

    /// A completed or aborted upload remembered longer than needed.
    pub fn outcome_expired(&self, now_ms: u64) -> bool {
        let at_ms = match &self.upload.state {
            UploadState::Completed(c) => c.decided_ms,
            UploadState::Aborted { at_ms } => *at_ms,
            _ => return false,
        };
        now_ms.saturating_sub(at_ms) > UPLOAD_OUTCOME_KEEP.as_millis() as u64
    }
}

fn no_such_upload(upload_id: &str) -> s3s::S3Error {
    s3_error!(NoSuchUpload, "no such upload: {upload_id}")
}

fn too_contended(upload_id: &str) -> s3s::S3Error {
    s3_error!(
        ServiceUnavailable,
        "upload {upload_id} keeps changing under this request; retry"
    )
}

/// Whether a commit was refused by its If-None-Match / If-Match.
fn refused_by_condition(e: &s3s::S3Error) -> bool {
    matches!(
        e.code(),
        S3ErrorCode::PreconditionFailed
            | S3ErrorCode::NoSuchKey
            | S3ErrorCode::ConditionalRequestConflict
    )
}

/// Whether `version` is in `record` already, or was and has since been
/// replaced or deleted (a version with its id and a later timestamp, or a
/// purge of it): writing it again is then not needed, and must not be.
fn landed(record: &ObjectRecord, version: &ObjectVersion) -> bool {
    record
        .versions
        .iter()
        .any(|v| v.version_id == version.version_id && v.ts >= version.ts)
        || record
            .purged
            .iter()
            .any(|p| p.version_id == version.version_id && p.ts >= version.ts)
}

/// The chunk ids a version names.
fn chunk_ids(version: &ObjectVersion) -> HashSet<ChunkId> {
    version
        .data
        .iter()
        .flat_map(|d| d.chunks.iter().map(|c| c.id))
        .collect()
}

/// Whether a Complete naming `named` (part number, ETag if given) asks for
/// what `completion` committed.
pub(crate) fn names_same_parts(completion: &Completion, named: &[(i32, Option<String>)]) -> bool {
    completion.parts.len() == named.len()
        && completion
            .parts
            .iter()
            .zip(named)
            .all(|((number, etag), (asked, asked_etag))| {
                number == asked && asked_etag.as_ref().is_none_or(|e| e == etag)
            })
}

impl Inner {
    /// The upload record as a quorum holds it; None when there is none.
    pub(crate) async fn read_upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> S3Result<Option<SeenUpload>> {
        let record = self
            .tables
            .get(
                Table::Uploads,
                model::bucket_partition(&bucket.id),
                &model::upload_key(&bucket.id, key, upload_id),
            )
            .await?;
        Ok(SeenUpload::from_record(record.as_ref()))
    }

    /// Moves an upload to `state` if its record is still the one `seen`
    /// read. Ok with the record written, or Err with the record as it now
    /// stands (another request changed it).
    pub(crate) async fn set_upload_state(
        &self,
        bucket: &BucketRecord,
        seen: &SeenUpload,
        state: UploadState,
    ) -> S3Result<Result<SeenUpload, Option<SeenUpload>>> {
        let upload = UploadRecord {
            state,
            ..seen.upload.clone()
        };
        let write = Record {
            key: model::upload_key(&bucket.id, &upload.key, &upload.upload_id),
            ts: self.tables.now(),
            value: Some(model::encode(&upload)),
        };
        let outcome = self
            .tables
            .conditional(
                Table::Uploads,
                model::bucket_partition(&bucket.id),
                Condition::Unchanged(seen.ts),
                write,
            )
            .await?;
        let now = SeenUpload::from_record(outcome.record.as_ref());
        Ok(match (outcome.written, now) {
            (true, Some(written)) => Ok(written),
            (_, now) => Err(now),
        })
    }

    /// `seen`, or once a Complete choosing parts is done, the upload as it
    /// then stands. A Complete that chose for longer than the lease is
    /// taken for dead and the upload reopened.
    async fn settled_upload(
        &self,
        bucket: &BucketRecord,
        mut seen: Option<SeenUpload>,
    ) -> S3Result<Option<SeenUpload>> {
        let deadline = tokio::time::Instant::now() + COMPLETING_LEASE + UPLOAD_STATE_POLL * 50;
        loop {
            let Some(current) = &seen else {
                return Ok(None);
            };
            let UploadState::Completing { since_ms } = current.upload.state else {
                return Ok(seen);
            };
            if self.tables.now_ms() >= since_ms + COMPLETING_LEASE.as_millis() as u64 {
                seen = match self
                    .set_upload_state(bucket, current, UploadState::Open)
                    .await?
                {
                    Ok(open) => Some(open),
                    Err(now) => now,
                };
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(s3_error!(
                    ServiceUnavailable,
                    "a Complete of upload {} is in progress; retry",
                    current.upload.upload_id
                ));
            }
            tokio::time::sleep(UPLOAD_STATE_POLL).await;
            seen = self
                .read_upload(bucket, &current.upload.key, &current.upload.upload_id)
                .await?;
        }
    }

    /// Completes an upload: the parts are chosen and the version made
    /// while no part can land (`Inner::decide_completion`); the decision is
    /// then committed. Returns what was committed.
    pub(crate) async fn complete_upload(
        &self,
        bucket: &BucketRecord,
        request: &CompleteRequest<'_>,
    ) -> S3Result<Completion> {
        let (key, upload_id, named) = (request.key, request.upload_id, request.named);
        let mut seen = self.read_upload(bucket, key, upload_id).await?;
        for _ in 0..MAX_UPLOAD_STEPS {
            let Some(current) = self.settled_upload(bucket, seen).await? else {
                return Err(no_such_upload(upload_id));
            };
            match &current.upload.state {
                UploadState::Open => {
                    let since_ms = self.tables.now_ms();
                    let choosing = match self
                        .set_upload_state(bucket, &current, UploadState::Completing { since_ms })
                        .await?
                    {
                        Ok(choosing) => choosing,
                        Err(now) => {
                            seen = now;
                            continue;
                        }
                    };
                    let completion = match self
                        .decide_completion(bucket, &choosing.upload, request)
                        .await
                    {
                        Ok(completion) => completion,
                        Err(e) => {
                            // The upload goes back as it was, as in S3; if
                            // that fails, the lease reopens it.
                            if let Err(reopen) = self
                                .set_upload_state(bucket, &choosing, UploadState::Open)
                                .await
                            {
                                tracing::warn!(upload = upload_id, error = %reopen, "cannot reopen an upload");
                            }
                            return Err(e);
                        }
                    };
                    let state = UploadState::Committing(Box::new(completion));
                    match self.set_upload_state(bucket, &choosing, state).await? {
                        Ok(committing) => return self.finish_completion(bucket, &committing).await,
                        // Reopened after the lease: choose again.
                        Err(now) => seen = now,
                    }
                }
                UploadState::Committing(completion) => {
                    let same = names_same_parts(completion, named);
                    let completion = self.finish_completion(bucket, &current).await?;
                    return if same {
                        Ok(completion)
                    } else {
                        Err(no_such_upload(upload_id))
                    };
                }
                UploadState::Completed(completion) if names_same_parts(completion, named) => {
                    return Ok((**completion).clone());
                }
                UploadState::Completed(_)
                | UploadState::Aborted { .. }
                | UploadState::Completing { .. } => return Err(no_such_upload(upload_id)),
            }
        }
        Err(too_contended(upload_id))
    }

    /// Finishes a Committing upload, whoever started it: writes the decided
    /// version unless it landed already, frees what it replaced, forgets the
    /// parts (freeing the chunks of parts not used) and marks the upload
    /// Completed. A commit refused by its condition reopens the upload.
    pub(crate) async fn finish_completion(
        &self,
        bucket: &BucketRecord,
        committing: &SeenUpload,
    ) -> S3Result<Completion> {
        let UploadState::Committing(completion) = &committing.upload.state else {
            return Err(s3_error!(
                InternalError,
                "the upload is not being committed"
            ));
        };
        let key = &committing.upload.key;
        let version = &completion.version;
        let (seen, previous) = self.object_record(bucket, key).await?;
        if !landed(&previous, version) {
            let condition = completion
                .condition
                .as_ref()
                .map(WriteCondition::from_condition);
            if let Err(e) = self
                .write_version(bucket, key, version, condition.as_ref(), seen)
                .await
            {
                if refused_by_condition(&e) {
                    // As in S3, the upload and its parts stay.
                    self.set_upload_state(bucket, committing, UploadState::Open)
                        .await?
                        .ok();
                }
                return Err(e);
            }
        }
        self.confirm_bucket(bucket).await?;
        self.free_replaced(&previous, version);
        self.forget_parts(bucket, &committing.upload.upload_id, &chunk_ids(version))
            .await?;
        let mut remembered = (**completion).clone();
        if let Some(data) = remembered.version.data.as_mut() {
            data.chunks = Vec::new();
        }
        // Refused only if another request finished it meanwhile.
        self.set_upload_state(
            bucket,
            committing,
            UploadState::Completed(Box::new(remembered)),
        )
        .await?
        .ok();
        Ok((**completion).clone())
    }

    /// Tombstones every part record of an upload and frees the chunks of
    /// those not in `keep`.
    async fn forget_parts(
        &self,
        bucket: &BucketRecord,
        upload_id: &str,
        keep: &HashSet<ChunkId>,
    ) -> S3Result<()> {
        let parts: Vec<PartRecord> = self.parts(bucket, upload_id).await?;
        if parts.is_empty() {
            return Ok(());
        }
        let ts = self.tables.now();
        let tombstones = parts
            .iter()
            .map(|p| Record {
                key: model::part_key(&bucket.id, upload_id, p.part_number),
                ts,
                value: None,
            })
            .collect();
        self.tables
            .put_records(
                Table::Parts,
                model::bucket_partition(&bucket.id),
                tombstones,
            )
            .await?;
        let freed = parts
            .into_iter()
            .flat_map(|p| p.chunks)
            .filter(|c| !keep.contains(&c.id))
            .collect();
        self.data.delete_chunks(freed);
        Ok(())
    }

    /// Looks after an upload nobody may come back to (the lifecycle
    /// worker's pass over every bucket's uploads): finishes a Complete whose
    /// gateway died after deciding, and forgets a completed or aborted upload
    /// remembered long enough.
    pub(crate) async fn tend_upload(
        &self,
        bucket: &BucketRecord,
        seen: &SeenUpload,
    ) -> S3Result<()> {
        match &seen.upload.state {
            UploadState::Committing(c)
                if self.tables.now_ms().saturating_sub(c.decided_ms)
                    > COMPLETING_LEASE.as_millis() as u64 =>
            {
                self.finish_completion(bucket, seen).await.map(drop)
            }
            _ if seen.outcome_expired(self.tables.now_ms()) => {
                if matches!(seen.upload.state, UploadState::Aborted { .. }) {
                    self.forget_parts(bucket, &seen.upload.upload_id, &HashSet::new())
                        .await?;
                }
                let tombstone = Record {
                    key: model::upload_key(&bucket.id, &seen.upload.key, &seen.upload.upload_id),
                    ts: self.tables.now(),
                    value: None,
                };
                self.tables
                    .conditional(
                        Table::Uploads,
                        model::bucket_partition(&bucket.id),
                        Condition::Unchanged(seen.ts),
                        tombstone,
                    )
                    .await
                    .map(drop)
            }
            _ => Ok(()),
        }
    }

    /// Aborts an upload and frees its parts (AbortMultipartUpload, the
    /// lifecycle rule AbortIncompleteMultipartUpload). An upload aborted
    /// already answers as done; a completed one NoSuchUpload.
    pub(crate) async fn abort_upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> S3Result<()> {
        let mut seen = self.read_upload(bucket, key, upload_id).await?;
        for _ in 0..MAX_UPLOAD_STEPS {
            let Some(current) = self.settled_upload(bucket, seen).await? else {
                return Err(no_such_upload(upload_id));
            };
            match &current.upload.state {
                UploadState::Open => {
                    let state = UploadState::Aborted {
                        at_ms: self.tables.now_ms(),
                    };
                    match self.set_upload_state(bucket, &current, state).await? {
                        Ok(_) => {
                            return self.forget_parts(bucket, upload_id, &HashSet::new()).await;
                        }
                        Err(now) => seen = now,
                    }
                }
                // Parts a crashed Abort left are freed by the next one.
                UploadState::Aborted { .. } => {
                    return self.forget_parts(bucket, upload_id, &HashSet::new()).await;
                }
                UploadState::Committing(_) => {
                    match self.finish_completion(bucket, &current).await {
                        Ok(_) => return Err(no_such_upload(upload_id)),
                        // The commit was refused and the upload reopened.
                        Err(e) if refused_by_condition(&e) => {
                            seen = self.read_upload(bucket, key, upload_id).await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                UploadState::Completed(_) | UploadState::Completing { .. } => {
                    return Err(no_such_upload(upload_id));
                }
            }
        }
        Err(too_contended(upload_id))
    }

    /// Records a stored body as part `part_number` of an upload (UploadPart,
    /// UploadPartCopy) if the upload is open, serialised with its changes of
    /// state; a part it replaces has its chunks freed. When the upload is
    /// not open, the body's chunks are freed and the answer is NoSuchUpload.
    pub(crate) async fn store_part(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        part: PartRecord,
    ) -> S3Result<PartRecord> {
        let partition = model::bucket_partition(&bucket.id);
        let part_key = model::part_key(&bucket.id, upload_id, part.part_number);
        let upload_key = model::upload_key(&bucket.id, key, upload_id);
        let refused = |e: s3s::S3Error| {
            self.data.delete_chunks(part.chunks.clone());
            e
        };
        let mut seen = self
            .read_upload(bucket, key, upload_id)
            .await
            .map_err(refused)?;
        for _ in 0..MAX_UPLOAD_STEPS {
            let current = self.settled_upload(bucket, seen).await.map_err(refused)?;
            let Some(current) = current.filter(|c| c.upload.state == UploadState::Open) else {
                return Err(refused(no_such_upload(upload_id)));
            };
            let replaced = self
                .tables
                .get(Table::Parts, partition, &part_key)
                .await
                .map_err(refused)?
                .and_then(|r| r.value)
                .and_then(|v| model::decode::<PartRecord>(&v));
            let write = Record {
                key: part_key.clone(),
                ts: self.tables.now(),
                value: Some(model::encode(&part)),
            };
            // A failure here may have landed: the chunks stay for the
            // garbage collector.
            let outcome = self
                .tables
                .guarded(
                    Table::Parts,
                    partition,
                    (Table::Uploads, upload_key.clone()),
                    Condition::Unchanged(current.ts),
                    write,
                )
                .await?;
            if outcome.written {
                if let Some(old) = replaced {
                    let kept: HashSet<ChunkId> = part.chunks.iter().map(|c| c.id).collect();
                    self.data.delete_chunks(
                        old.chunks
                            .into_iter()
                            .filter(|c| !kept.contains(&c.id))
                            .collect(),
                    );
                }
                return Ok(part);
            }
            seen = SeenUpload::from_record(outcome.record.as_ref());
        }
        Err(refused(too_contended(upload_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::Purged;

    fn version(id: &str, ts: u64) -> ObjectVersion {
        ObjectVersion {
            version_id: id.into(),
            ts,
            last_modified_ms: 0,
            data: None,
            updated_ts: 0,
        }
    }

    #[test]
    fn a_version_landed_if_it_or_a_later_one_of_its_id_is_there_or_purged() {
        let ours = version("null", 10);
        let record = |versions, purged| ObjectRecord { versions, purged };
        assert!(!landed(&record(vec![], vec![]), &ours));
        assert!(!landed(&record(vec![version("null", 9)], vec![]), &ours));
        assert!(!landed(&record(vec![version("v2", 12)], vec![]), &ours));
        assert!(landed(&record(vec![version("null", 10)], vec![]), &ours));
        assert!(landed(&record(vec![version("null", 11)], vec![]), &ours));
        let purged = Purged {
            version_id: "null".into(),
            ts: 10,
        };
        assert!(landed(&record(vec![], vec![purged]), &ours));
    }

    #[test]
    fn a_repeated_complete_names_the_same_parts_with_or_without_etags() {
        let completion = Completion {
            parts: vec![(1, "a".into()), (3, "b".into())],
            version: version("v", 1),
            condition: None,
            decided_ms: 0,
        };
        let named = |list: &[(i32, Option<&str>)]| -> Vec<(i32, Option<String>)> {
            list.iter()
                .map(|(n, e)| (*n, e.map(String::from)))
                .collect()
        };
        assert!(names_same_parts(
            &completion,
            &named(&[(1, Some("a")), (3, Some("b"))])
        ));
        assert!(names_same_parts(
            &completion,
            &named(&[(1, None), (3, Some("b"))])
        ));
        assert!(!names_same_parts(&completion, &named(&[(1, Some("a"))])));
        assert!(!names_same_parts(
            &completion,
            &named(&[(1, Some("a")), (3, Some("c"))])
        ));
        assert!(!names_same_parts(
            &completion,
            &named(&[(1, Some("a")), (2, Some("b"))])
        ));
    }
}
