//! Object and bucket tagging: Put/Get/DeleteObjectTagging,
//! Put/Get/DeleteBucketTagging, and the `x-amz-tagging` header of PutObject,
//! CreateMultipartUpload and CopyObject.

use std::collections::HashSet;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Inner, check_key};
use crate::limits::{MAX_BUCKET_TAGS, MAX_OBJECT_TAGS, MAX_TAG_KEY_LEN, MAX_TAG_VALUE_LEN};
use crate::store::model::{BucketRecord, ObjectVersion};

pub(crate) type Tags = Vec<(String, String)>;

/// Checks a tag set against S3's rules: at most `max` tags, keys of 1 to
/// 128 and values of at most 256 UTF-16 positions, no `aws:` keys, no key
/// twice.
pub(crate) fn validate_tags(tags: &Tags, max: usize) -> S3Result<()> {
    if tags.len() > max {
        return Err(s3_error!(InvalidTag, "Tags cannot be greater than {max}"));
    }
    let mut seen = HashSet::new();
    for (key, value) in tags {
        let key_len = key.encode_utf16().count();
        if key_len == 0 || key_len > MAX_TAG_KEY_LEN {
            return Err(s3_error!(
                InvalidTag,
                "The TagKey you have provided is invalid: keys have 1 to {MAX_TAG_KEY_LEN} characters"
            ));
        }
        if value.encode_utf16().count() > MAX_TAG_VALUE_LEN {
            return Err(s3_error!(
                InvalidTag,
                "The TagValue you have provided is invalid: values have at most {MAX_TAG_VALUE_LEN} characters"
            ));
        }
        if key.starts_with("aws:") {
            return Err(s3_error!(
                InvalidTag,
                "Your TagKey cannot be prefixed with aws:"
            ));
        }
        if !seen.insert(key.as_str()) {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    Ok(())
}

/// The tags of an XML `TagSet`; a tag without Key or Value is malformed.
pub(crate) fn from_tag_set(tag_set: TagSet, max: usize) -> S3Result<Tags> {
    let tags = tag_set
        .into_iter()
        .map(|t| match (t.key, t.value) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(s3_error!(MalformedXML, "every Tag needs a Key and a Value")),
        })
        .collect::<S3Result<Tags>>()?;
    validate_tags(&tags, max)?;
    Ok(tags)
}

pub(crate) fn to_tag_set(tags: &Tags) -> TagSet {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

/// The `x-amz-tagging` header: a URL-encoded query string, `k1=v1&k2=v2`.
pub(crate) fn parse_tagging_header(header: Option<&str>) -> S3Result<Tags> {
    let Some(header) = header.filter(|h| !h.is_empty()) else {
        return Ok(Vec::new());
    };
    let tags: Tags = form_urlencoded::parse(header.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    validate_tags(&tags, MAX_OBJECT_TAGS)?;
    Ok(tags)
}

/// The tags a copy gets: the source's (`x-amz-tagging-directive: COPY`,
/// the default) or those of `x-amz-tagging` (`REPLACE`).
pub(crate) fn copy_tags(
    directive: Option<&TaggingDirective>,
    header: Option<&str>,
    source: &Tags,
) -> S3Result<Tags> {
    match directive.map(TaggingDirective::as_str) {
        None | Some(TaggingDirective::COPY) => Ok(source.clone()),
        Some(TaggingDirective::REPLACE) => parse_tagging_header(header),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "Unknown tagging directive: {other}"
        )),
    }
}

/// One object version addressed by a tagging request.
struct Addressed {
    bucket: BucketRecord,
    version: ObjectVersion,
    /// The version id as S3 reports it (none in an unversioned bucket).
    label: Option<String>,
}

impl Inner {
    /// The version `version_id` of `key`, or its current version. A delete
    /// marker has no tags to address.
    async fn addressed_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<Addressed> {
        check_key(key)?;
        let bucket = self.bucket(bucket).await?;
        let (_, record) = self.object_record(&bucket, key).await?;
        let no_such_key = || s3_error!(NoSuchKey, "no such key: {key}");
        let version = match version_id {
            Some(id) => record
                .version(id)
                .ok_or_else(|| s3_error!(NoSuchVersion, "no such version: {id}"))?,
            None => record.current().ok_or_else(no_such_key)?,
        };
        if version.data.is_none() {
            return Err(match version_id {
                Some(_) => s3_error!(MethodNotAllowed, "the version is a delete marker"),
                None => no_such_key(),
            });
        }
        Ok(Addressed {
            label: bucket.versioning.label(&version.version_id),
            version: version.clone(),
            bucket,
        })
    }

    /// Replaces the tags of one version; returns its id as S3 reports it.
    async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: Tags,
    ) -> S3Result<Option<String>> {
        let Addressed {
            bucket,
            mut version,
            label,
        } = self.addressed_version(bucket, key, version_id).await?;
        if let Some(data) = version.data.as_mut() {
            data.tags = tags;
        }
        // Object records merge as a union of versions, the newest
        // `updated_ts` winning for one version: sending just this version
        // changes its tags and nothing else, and a version deleted meanwhile
        // stays deleted (its purge covers it).
        let ts = self.tables.now();
        version.updated_ts = ts;
        self.change_record(&bucket, key, ts, vec![version], Vec::new())
            .await?;
        Ok(label)
    }

    pub(crate) async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let tags = from_tag_set(input.tagging.tag_set, MAX_OBJECT_TAGS)?;
        let version_id = self
            .set_object_tags(&input.bucket, &input.key, input.version_id.as_deref(), tags)
            .await?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id }))
    }

    pub(crate) async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let addressed = self
            .addressed_version(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        let tags = addressed
            .version
            .data
            .as_ref()
            .map(|d| to_tag_set(&d.tags))
            .unwrap_or_default();
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tags,
            version_id: addressed.label,
        }))
    }

    pub(crate) async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        let version_id = self
            .set_object_tags(
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                Vec::new(),
            )
            .await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput { version_id }))
    }

    pub(crate) async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let input = req.input;
        let tags = from_tag_set(input.tagging.tag_set, MAX_BUCKET_TAGS)?;
        self.update_bucket(&input.bucket, |b| b.tags = tags.clone())
            .await?;
        Ok(S3Response::new(PutBucketTaggingOutput {}))
    }

    pub(crate) async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        if bucket.tags.is_empty() {
            return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
        }
        Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: to_tag_set(&bucket.tags),
        }))
    }

    pub(crate) async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.update_bucket(&req.input.bucket, |b| b.tags.clear())
            .await?;
        Ok(S3Response::new(DeleteBucketTaggingOutput {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tag_limits_count_utf16_positions() {
        let key = "é".repeat(MAX_TAG_KEY_LEN);
        assert!(validate_tags(&tags(&[(&key, "v")]), 10).is_ok());
        let long = "😀".repeat(MAX_TAG_KEY_LEN / 2 + 1);
        assert!(validate_tags(&tags(&[(&long, "v")]), 10).is_err());
        assert!(validate_tags(&tags(&[("", "v")]), 10).is_err());
        assert!(validate_tags(&tags(&[("a", "1"), ("a", "2")]), 10).is_err());
        assert!(validate_tags(&tags(&[("aws:x", "1")]), 10).is_err());
    }

    #[test]
    fn tagging_header_is_url_decoded() {
        let parsed = parse_tagging_header(Some("a=1&b%20c=d%26e&empty=")).unwrap();
        assert_eq!(parsed, tags(&[("a", "1"), ("b c", "d&e"), ("empty", "")]));
        assert!(parse_tagging_header(Some("a=1&a=2")).is_err());
        assert!(parse_tagging_header(None).unwrap().is_empty());
    }
}
