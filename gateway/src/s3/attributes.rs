//! GetObjectAttributes: what HEAD tells, plus the parts of a multipart
//! object, as XML and without the body.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Inner;
use super::bucket::timestamp;
use super::versions::pick_version;
use crate::checksum::{self, set_checksums};
use crate::limits::MAX_LIST_PARTS;
use crate::store::model::ObjectData;

/// The attributes x-amz-object-attributes asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Wanted {
    etag: bool,
    checksum: bool,
    parts: bool,
    storage_class: bool,
    size: bool,
}

impl Wanted {
    /// SDKs send the list as one comma-separated header, which s3s keeps as
    /// one value; repeated headers work too.
    fn parse(list: &[ObjectAttributes]) -> S3Result<Wanted> {
        let mut wanted = Wanted::default();
        for name in list.iter().flat_map(|a| a.as_str().split(',')) {
            let slot = match name.trim() {
                ObjectAttributes::ETAG => &mut wanted.etag,
                ObjectAttributes::CHECKSUM => &mut wanted.checksum,
                ObjectAttributes::OBJECT_PARTS => &mut wanted.parts,
                ObjectAttributes::STORAGE_CLASS => &mut wanted.storage_class,
                ObjectAttributes::OBJECT_SIZE => &mut wanted.size,
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Invalid attribute name specified."
                    ));
                }
            };
            *slot = true;
        }
        Ok(wanted)
    }
}

/// ObjectParts of a multipart object (None for a single PUT, as in S3). As
/// S3, the parts themselves are listed only for an upload made with a
/// ChecksumAlgorithm; the count always.
fn object_parts(
    data: &ObjectData,
    max_parts: Option<i32>,
    marker: Option<i32>,
) -> S3Result<Option<GetObjectAttributesParts>> {
    if max_parts.is_some_and(|m| m < 0) {
        return Err(s3_error!(
            InvalidArgument,
            "max-parts must be a non-negative integer"
        ));
    }
    if marker.is_some_and(|m| m < 0) {
        return Err(s3_error!(
            InvalidArgument,
            "part-number-marker must be a non-negative integer"
        ));
    }
    if data.part_sizes.is_empty() {
        return Ok(None);
    }
    let max = max_parts.unwrap_or(MAX_LIST_PARTS).min(MAX_LIST_PARTS) as usize;
    let after = marker.unwrap_or(0) as usize;
    let listed: Vec<ObjectPart> = data
        .part_checksums
        .iter()
        .zip(&data.part_sizes)
        .enumerate()
        .skip(after)
        .map(|(i, (checksums, size))| {
            let mut part = ObjectPart {
                part_number: Some(i as i32 + 1),
                size: Some(*size as i64),
                ..Default::default()
            };
            set_checksums!(part, checksum::to_dto(checksums));
            part
        })
        .collect();
    let truncated = listed.len() > max;
    let page: Vec<ObjectPart> = listed.into_iter().take(max).collect();
    Ok(Some(GetObjectAttributesParts {
        total_parts_count: Some(data.part_sizes.len() as i32),
        part_number_marker: marker,
        next_part_number_marker: page.last().and_then(|p| p.part_number),
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        parts: (!data.part_checksums.is_empty()).then_some(page),
    }))
}

impl Inner {
    pub(crate) async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        let wanted = Wanted::parse(&input.object_attributes)?;
        let bucket = self.bucket_for_read(&input.bucket).await?;
        let (_, record) = self.object_record(&bucket, &input.key).await?;
        // A delete marker answers as on GET: NoSuchKey, or 405 by version id.
        let version = pick_version(&record, &input.key, input.version_id.as_deref())?;
        let data = version.data.clone().unwrap_or_default();
        let object_parts = if wanted.parts {
            object_parts(&data, input.max_parts, input.part_number_marker)?
        } else {
            None
        };
        Ok(S3Response::new(GetObjectAttributesOutput {
            last_modified: Some(timestamp(version.last_modified_ms)),
            version_id: bucket.versioning.label(&version.version_id),
            e_tag: wanted.etag.then(|| ETag::Strong(data.etag.clone())),
            checksum: (wanted.checksum && !data.checksums.is_empty())
                .then(|| checksum::to_dto(&data.checksums)),
            object_parts,
            storage_class: wanted
                .storage_class
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            object_size: wanted.size.then_some(data.size as i64),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_lists_are_split_on_commas_and_unknown_names_refused() {
        let one = [ObjectAttributes::from("ETag, ObjectSize".to_string())];
        assert_eq!(
            Wanted::parse(&one).unwrap(),
            Wanted {
                etag: true,
                size: true,
                ..Default::default()
            }
        );
        let bad = [ObjectAttributes::from("ETag,Colour".to_string())];
        assert!(Wanted::parse(&bad).is_err());
    }

    #[test]
    fn parts_page_after_the_marker_and_only_for_multipart_objects() {
        let single = ObjectData::default();
        assert!(object_parts(&single, None, None).unwrap().is_none());
        let data = ObjectData {
            part_sizes: vec![5, 5, 2],
            part_checksums: vec![vec![("sha256".into(), "x".into())]; 3],
            ..Default::default()
        };
        let page = object_parts(&data, Some(1), Some(1)).unwrap().unwrap();
        assert_eq!(page.total_parts_count, Some(3));
        assert_eq!(page.is_truncated, Some(true));
        assert_eq!(page.next_part_number_marker, Some(2));
        let parts = page.parts.unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].checksum_sha256.as_deref(), Some("x"));
        assert!(object_parts(&data, Some(-1), None).is_err());
    }
}
