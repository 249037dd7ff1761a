//! The multipart family. Parts are stored as chunks like any object data;
//! completing an upload concatenates the chosen parts' chunk lists, it never
//! copies data.

use chunkstore::Table;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::acl::writer;
use super::bucket::{owner, timestamp};
use super::completion::{CompleteRequest, SeenUpload};
use super::conditional::WriteCondition;
use super::list::Names;
use super::put::{ContentHeaders, body_stream, chunk_owner, parse_content_md5};
use super::tagging::parse_tagging_header;
use super::{Inner, check_key, requester};
use crate::checksum::{self, UploadChecksum, given_checksums, requested_checksum, set_checksums};
use crate::limits::{
    MAX_LIST_KEYS, MAX_LIST_PARTS, MAX_PART_NUMBER, MAX_PUT_SIZE, MAX_SCAN_ROUNDS, MIN_PART_SIZE,
    SCAN_BATCH,
};
use crate::store::data::Written;
use crate::store::hlc::{ts_millis, wall_ms};
use crate::store::model::{
    self, BucketRecord, Completion, ObjectData, ObjectVersion, PartRecord, UploadRecord,
    UploadState,
};

/// The record of a stored body as part `part_number`.
pub(super) fn part_record(part_number: i32, written: Written) -> PartRecord {
    PartRecord {
        part_number,
        etag: hex::encode(written.md5),
        size: written.size,
        last_modified_ms: wall_ms(),
        chunks: written.chunks,
        checksums: written.checksums,
    }
}

impl Inner {
    /// An upload in progress (open, or a Complete choosing its parts).
    async fn upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> S3Result<UploadRecord> {
        self.read_upload(bucket, key, upload_id)
            .await?
            .filter(SeenUpload::in_progress)
            .map(|seen| seen.upload)
            .ok_or_else(|| s3_error!(NoSuchUpload, "no such upload: {upload_id}"))
    }

    /// Every part record of an upload, in part-number order.
    pub(super) async fn parts(
        &self,
        bucket: &BucketRecord,
        upload_id: &str,
    ) -> S3Result<Vec<PartRecord>> {
        let prefix = model::part_prefix(&bucket.id, upload_id);
        self.tables
            .scan_all(
                Table::Parts,
                model::bucket_partition(&bucket.id),
                &prefix,
                &model::prefix_end(&prefix),
            )
            .await
    }

    pub(crate) async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let bucket = self.bucket(&input.bucket).await?;
        self.data.check_writable()?;
        let checksum = UploadChecksum::from_request(
            input.checksum_algorithm.as_ref(),
            input.checksum_type.as_ref(),
        )?;
        let content = ContentHeaders::new(
            input.content_type,
            input.cache_control,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.expires,
            input.metadata,
        );
        let owner = writer(req.credentials.as_ref(), &bucket);
        let acl = self
            .new_object_acl(
                input.acl.as_ref().map(|a| a.as_str()),
                &req.headers,
                &owner,
                &bucket,
            )
            .await?;
        let upload = UploadRecord {
            key: input.key.clone(),
            upload_id: model::random_id(),
            initiated_ms: wall_ms(),
            content_type: content.content_type,
            headers: content.headers,
            user_meta: content.user_meta,
            tags: parse_tagging_header(input.tagging.as_deref())?,
            checksum,
            public_read: crate::acl::is_public_read(&acl),
            owner: Some(owner),
            acl: Some(acl),
            state: UploadState::Open,
        };
        self.tables
            .put(
                Table::Uploads,
                model::bucket_partition(&bucket.id),
                model::upload_key(&bucket.id, &input.key, &upload.upload_id),
                Some(model::encode(&upload)),
            )
            .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(bucket.name),
            key: Some(input.key),
            upload_id: Some(upload.upload_id),
            checksum_algorithm: checksum.map(UploadChecksum::checksum_algorithm),
            checksum_type: checksum.map(UploadChecksum::checksum_type),
            ..Default::default()
        }))
    }

    pub(crate) async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let upload = self
            .upload_for_part(&bucket, &input.key, &input.upload_id, input.part_number)
            .await?;
        let expected_md5 = parse_content_md5(input.content_md5.as_deref())?;
        let requested = requested_checksum!(req, input)?;
        let algorithms = checksum::part_algorithms(upload.checksum, requested.as_ref())?;
        let owner = chunk_owner(&bucket, &input.key, &input.upload_id);
        let written = self
            .data
            .write(body_stream(input.body), owner, MAX_PUT_SIZE, &algorithms)
            .await?;
        self.check_written(
            &written,
            input.content_length,
            expected_md5,
            requested.as_ref(),
        )?;
        let lease = written.lease.clone();
        let part = part_record(input.part_number, written);
        self.still_leased(&lease, &part.chunks)?;
        let part = self
            .store_part(&bucket, &input.key, &input.upload_id, part)
            .await?;
        drop(lease);
        let mut output = UploadPartOutput {
            e_tag: Some(ETag::Strong(part.etag)),
            ..Default::default()
        };
        set_checksums!(output, checksum::to_dto(&part.checksums));
        Ok(S3Response::new(output))
    }

    /// The upload a part goes to, with the part number checked
    /// (UploadPart, UploadPartCopy).
    pub(super) async fn upload_for_part(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        part_number: i32,
    ) -> S3Result<UploadRecord> {
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers go from 1 to {MAX_PART_NUMBER}"
            ));
        }
        self.upload(bucket, key, upload_id).await
    }

    pub(crate) async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let condition =
            WriteCondition::from_request(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let bucket = self.bucket(&input.bucket).await?;
        let chosen = input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.clone())
            .unwrap_or_default();
        if chosen.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "the request must name at least one part"
            ));
        }
        let named: Vec<(i32, Option<String>)> = chosen
            .iter()
            .map(|p| {
                let number = p
                    .part_number
                    .ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?;
                let etag = p
                    .e_tag
                    .as_ref()
                    .map(|e| e.value().trim_matches('"').to_string());
                Ok((number, etag))
            })
            .collect::<S3Result<_>>()?;
        let request = CompleteRequest {
            key: &input.key,
            upload_id: &input.upload_id,
            chosen: &chosen,
            named: &named,
            condition: condition.as_ref(),
            input: &input,
        };
        let completed = self.complete_upload(&bucket, &request).await;
        let completion = match completed {
            Ok(completion) => completion,
            Err(e) if e.code() == &s3s::S3ErrorCode::NoSuchUpload => {
                // An upload completed by 0.1, or forgotten since: the
                // current version tells whether this Complete succeeded.
                return match self.completed_already(&bucket, &input).await? {
                    Some(output) => Ok(S3Response::new(output)),
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let version = &completion.version;
        let data = version.data.as_ref();
        let mut output = CompleteMultipartUploadOutput {
            bucket: Some(bucket.name.clone()),
            key: Some(input.key.clone()),
            e_tag: data.map(|d| ETag::Strong(d.etag.clone())),
            location: Some(format!("/{}/{}", bucket.name, input.key)),
            version_id: bucket.versioning.label_of_write(&version.version_id),
            ..Default::default()
        };
        let object_checksums = checksum::to_dto(data.map_or(&[][..], |d| &d.checksums[..]));
        set_checksums!(output, object_checksums, typed);
        Ok(S3Response::new(output))
    }

    /// Chooses the parts a Complete names and makes the object version of
    /// them; runs while the upload is Completing, so no part changes.
    pub(super) async fn decide_completion(
        &self,
        bucket: &BucketRecord,
        upload: &UploadRecord,
        request: &CompleteRequest<'_>,
    ) -> S3Result<Completion> {
        let (input, chosen, condition) = (request.input, request.chosen, request.condition);
        let stored = self.parts(bucket, &upload.upload_id).await?;
        let mut previous = 0;
        let mut used: Vec<&PartRecord> = Vec::with_capacity(chosen.len());
        for part in chosen {
            let number = part
                .part_number
                .ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?;
            if number <= previous {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "parts must be listed in ascending order"
                ));
            }
            previous = number;
            let record = stored
                .iter()
                .find(|p| p.part_number == number)
                .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
            if let Some(etag) = &part.e_tag
                && etag.value().trim_matches('"') != record.etag
            {
                return Err(s3_error!(InvalidPart, "part {number} has another ETag"));
            }
            checksum::check_part(
                upload.checksum,
                number,
                given_checksums!(part),
                &record.checksums,
            )?;
            used.push(record);
        }
        if let Some((_, all_but_last)) = used.split_last()
            && let Some(small) = all_but_last.iter().find(|p| p.size < MIN_PART_SIZE)
        {
            return Err(s3_error!(
                EntityTooSmall,
                "part {} has {} bytes; every part but the last needs at least {MIN_PART_SIZE}",
                small.part_number,
                small.size
            ));
        }

        let mut md5s = Md5::new();
        for p in &used {
            let raw = hex::decode(&p.etag).unwrap_or_default();
            md5s.update(&raw);
        }
        let etag = format!("{}-{}", hex::encode(md5s.finalize()), used.len());
        let part_checksums: Vec<_> = used.iter().map(|p| (&p.checksums[..], p.size)).collect();
        let checksums = checksum::object_checksum(upload.checksum, &part_checksums);
        checksum::check_object(given_checksums!(input), &checksums)?;
        let data = ObjectData {
            size: used.iter().map(|p| p.size).sum(),
            etag,
            content_type: upload.content_type.clone(),
            headers: upload.headers.clone(),
            user_meta: upload.user_meta.clone(),
            checksums,
            part_sizes: used.iter().map(|p| p.size).collect(),
            // Parts of an upload with an algorithm are hashed with it alone.
            part_checksums: match upload.checksum {
                Some(_) => used.iter().map(|p| p.checksums.clone()).collect(),
                None => Vec::new(),
            },
            chunks: used.iter().flat_map(|p| p.chunks.clone()).collect(),
            tags: upload.tags.clone(),
            public_read: upload.public_read,
            owner: upload.owner.clone(),
            acl: upload.acl.clone(),
        };
        let ts = self.tables.now();
        Ok(Completion {
            parts: used
                .iter()
                .map(|p| (p.part_number, p.etag.clone()))
                .collect(),
            version: ObjectVersion {
                version_id: bucket.versioning.new_version_id(ts),
                ts,
                last_modified_ms: ts_millis(ts).max(wall_ms()),
                data: Some(data),
                updated_ts: 0,
            },
            condition: condition.map(WriteCondition::to_condition),
            decided_ms: self.tables.now_ms(),
        })
    }

    /// A Complete sent again after its upload was forgotten (completed by
    /// 0.1, or longer ago than uploads are remembered): S3 answers it like
    /// the first one. The current version is recognised by its ETag, which
    /// the listed parts' ETags determine.
    async fn completed_already(
        &self,
        bucket: &BucketRecord,
        input: &CompleteMultipartUploadInput,
    ) -> S3Result<Option<CompleteMultipartUploadOutput>> {
        let Some(parts) = input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.as_ref())
        else {
            return Ok(None);
        };
        let mut md5s = Md5::new();
        for part in parts {
            let Some(raw) = part
                .e_tag
                .as_ref()
                .and_then(|e| hex::decode(e.value().trim_matches('"')).ok())
            else {
                return Ok(None);
            };
            md5s.update(&raw);
        }
        let etag = format!("{}-{}", hex::encode(md5s.finalize()), parts.len());
        let (_, record) = self.object_record(bucket, &input.key).await?;
        let Some(version) = record.current_data() else {
            return Ok(None);
        };
        let same = version.data.as_ref().is_some_and(|d| d.etag == etag);
        Ok(same.then(|| CompleteMultipartUploadOutput {
            bucket: Some(bucket.name.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", bucket.name, input.key)),
            version_id: bucket.versioning.label_of_write(&version.version_id),
            ..Default::default()
        }))
    }

    pub(crate) async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        self.abort_upload(&bucket, &input.key, &input.upload_id)
            .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(crate) async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let who = requester(&req)?;
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let upload = self.upload(&bucket, &input.key, &input.upload_id).await?;
        let marker = input.part_number_marker.unwrap_or(0);
        let max = input
            .max_parts
            .unwrap_or(MAX_LIST_PARTS)
            .clamp(0, MAX_LIST_PARTS) as usize;
        let after: Vec<PartRecord> = self
            .parts(&bucket, &input.upload_id)
            .await?
            .into_iter()
            .filter(|p| p.part_number > marker)
            .collect();
        let truncated = after.len() > max;
        let page: Vec<PartRecord> = after.into_iter().take(max).collect();
        let next_marker = page.last().map(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(bucket.name),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next_marker,
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            owner: Some(owner(&who)),
            initiator: Some(Initiator {
                display_name: Some(who.clone()),
                id: Some(hex::encode(who.as_bytes())),
            }),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            checksum_algorithm: upload.checksum.map(UploadChecksum::checksum_algorithm),
            checksum_type: upload.checksum.map(UploadChecksum::checksum_type),
            parts: Some(
                page.into_iter()
                    .map(|p| {
                        let mut part = Part {
                            part_number: Some(p.part_number),
                            e_tag: Some(ETag::Strong(p.etag)),
                            size: Some(p.size as i64),
                            last_modified: Some(timestamp(p.last_modified_ms)),
                            ..Default::default()
                        };
                        set_checksums!(part, checksum::to_dto(&p.checksums));
                        part
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let who = requester(&req)?;
        let input = req.input;
        let names = Names::from_request(input.encoding_type.as_ref())?;
        let bucket = self.bucket(&input.bucket).await?;
        let partition = model::bucket_partition(&bucket.id);
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max = input
            .max_uploads
            .unwrap_or(MAX_LIST_KEYS as i32)
            .clamp(0, MAX_LIST_KEYS as i32) as usize;
        let base = model::object_prefix(&bucket.id);
        let end = model::prefix_end(&[base.as_slice(), prefix.as_bytes()].concat());
        let mut position = [base.as_slice(), prefix.as_bytes()].concat();
        if let Some(key_marker) = input.key_marker.as_deref().filter(|m| !m.is_empty()) {
            let after = match input.upload_id_marker.as_deref() {
                Some(id) => model::key_after(&model::upload_key(&bucket.id, key_marker, id)),
                // Without an upload-id marker, every upload of the marker key is skipped.
                None => model::upload_key(&bucket.id, key_marker, "\u{10ffff}"),
            };
            position = position.max(after);
        }

        let mut uploads = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut truncated = false;
        'scan: for _ in 0..MAX_SCAN_ROUNDS {
            let page = self
                .tables
                .scan(Table::Uploads, partition, &position, &end, SCAN_BATCH)
                .await?;
            for record in &page.records {
                let Some(upload) = SeenUpload::from_record(Some(record))
                    .filter(SeenUpload::in_progress)
                    .map(|seen| seen.upload)
                else {
                    continue;
                };
                if uploads.len() + prefixes.len() == max {
                    truncated = true;
                    break 'scan;
                }
                let rolled = delimiter.as_deref().and_then(|d| {
                    upload.key[prefix.len()..]
                        .find(d)
                        .map(|i| upload.key[..prefix.len() + i + d.len()].to_string())
                });
                match rolled {
                    Some(common) => {
                        if prefixes.last() != Some(&common) {
                            prefixes.push(common);
                        }
                    }
                    None => uploads.push(upload),
                }
            }
            match page.next {
                Some(next) => position = next,
                None => break,
            }
        }
        let next_key_marker = uploads.last().map(|u| u.key.clone());
        let next_upload_id_marker = uploads.last().map(|u| u.upload_id.clone());
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(bucket.name),
            prefix: names.opt(input.prefix),
            delimiter: names.opt(input.delimiter),
            key_marker: names.opt(input.key_marker),
            upload_id_marker: input.upload_id_marker,
            next_key_marker: names.opt(truncated.then_some(next_key_marker).flatten()),
            next_upload_id_marker: truncated.then_some(next_upload_id_marker).flatten(),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            common_prefixes: Some(names.prefixes(prefixes)),
            encoding_type: input.encoding_type,
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(names.name(&u.key)),
                        upload_id: Some(u.upload_id),
                        initiated: Some(timestamp(u.initiated_ms)),
                        initiator: Some(Initiator {
                            display_name: Some(who.clone()),
                            id: Some(hex::encode(who.as_bytes())),
                        }),
                        owner: Some(owner(&who)),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        checksum_algorithm: u.checksum.map(UploadChecksum::checksum_algorithm),
                        checksum_type: u.checksum.map(UploadChecksum::checksum_type),
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}
