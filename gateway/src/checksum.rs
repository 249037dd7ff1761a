//! Object checksums (`x-amz-checksum-*`): which algorithm a request asks
//! for, computing it while the body streams (constant memory), checking the
//! client's value (a header, or an aws-chunked trailer read once the body is
//! consumed), and making a multipart object's checksum from its parts'.
//!
//! Stored values are base64 by lowercase algorithm name, as S3 sends them; a
//! multipart COMPOSITE value keeps S3's `-N` suffix (N = parts), which is how
//! its type is told from FULL_OBJECT (`-` is not a base64 character).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::{Checksum, ChecksumAlgorithm, ChecksumType};
use s3s::{S3Error, S3ErrorCode, S3Result, TrailingHeaders, s3_error};
use serde::{Deserialize, Serialize};

/// The checksum algorithms S3 offers; stored by their lowercase names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

/// What S3 computes for an object uploaded without a checksum.
pub const DEFAULT_ALGORITHM: Algorithm = Algorithm::Crc64Nvme;

const TRAILER_HEADER: &str = "x-amz-trailer";
const HEADER_PREFIX: &str = "x-amz-checksum-";

impl Algorithm {
    const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// Lowercase, as in `x-amz-checksum-NAME` and in stored records.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "crc32",
            Algorithm::Crc32c => "crc32c",
            Algorithm::Crc64Nvme => "crc64nvme",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
        }
    }

    /// As S3 spells it in ChecksumAlgorithm and in its error messages.
    pub fn upper(self) -> &'static str {
        match self {
            Algorithm::Crc32 => ChecksumAlgorithm::CRC32,
            Algorithm::Crc32c => ChecksumAlgorithm::CRC32C,
            Algorithm::Crc64Nvme => ChecksumAlgorithm::CRC64NVME,
            Algorithm::Sha1 => ChecksumAlgorithm::SHA1,
            Algorithm::Sha256 => ChecksumAlgorithm::SHA256,
        }
    }

    /// Case-insensitive, as S3 reads x-amz-sdk-checksum-algorithm.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    fn header(self) -> String {
        format!("{HEADER_PREFIX}{}", self.name())
    }

    fn digest_len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    /// CRCs can be combined into a full-object value; hashes cannot.
    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Algorithm::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Algorithm::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Algorithm::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }

    /// The raw digest of a base64 value, if it is one of this algorithm.
    fn decode(self, value: &str) -> Option<Vec<u8>> {
        BASE64
            .decode(value.trim())
            .ok()
            .filter(|d| d.len() == self.digest_len())
    }
}

/// Computes the given algorithms over a body piece by piece.
pub struct Hasher(ChecksumHasher);

impl Hasher {
    pub fn new(algorithms: &[Algorithm]) -> Hasher {
        let mut h = ChecksumHasher::default();
        for a in algorithms {
            match a {
                Algorithm::Crc32 => h.crc32 = Some(Crc32::new()),
                Algorithm::Crc32c => h.crc32c = Some(Crc32c::new()),
                Algorithm::Crc64Nvme => h.crc64nvme = Some(Crc64Nvme::new()),
                Algorithm::Sha1 => h.sha1 = Some(Sha1::new()),
                Algorithm::Sha256 => h.sha256 = Some(Sha256::new()),
            }
        }
        Hasher(h)
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// (algorithm name, base64) of every algorithm computed.
    pub fn finalize(self) -> Vec<(String, String)> {
        pairs(self.0.finalize())
            .into_iter()
            .map(|(a, v)| (a.name().to_string(), v))
            .collect()
    }
}

/// The values set in an s3s checksum struct, by algorithm.
fn pairs(c: Checksum) -> Vec<(Algorithm, String)> {
    [
        (Algorithm::Crc32, c.checksum_crc32),
        (Algorithm::Crc32c, c.checksum_crc32c),
        (Algorithm::Crc64Nvme, c.checksum_crc64nvme),
        (Algorithm::Sha1, c.checksum_sha1),
        (Algorithm::Sha256, c.checksum_sha256),
    ]
    .into_iter()
    .filter_map(|(a, v)| v.map(|v| (a, v)))
    .collect()
}

/// FULL_OBJECT or COMPOSITE, from the form of a stored value.
fn checksum_type(value: &str) -> ChecksumType {
    if value.contains('-') {
        ChecksumType::from_static(ChecksumType::COMPOSITE)
    } else {
        ChecksumType::from_static(ChecksumType::FULL_OBJECT)
    }
}

/// Stored checksums as the s3s struct that answers carry.
pub fn to_dto(stored: &[(String, String)]) -> Checksum {
    let mut c = Checksum::default();
    for (name, value) in stored {
        let slot = match Algorithm::from_name(name) {
            Some(Algorithm::Crc32) => &mut c.checksum_crc32,
            Some(Algorithm::Crc32c) => &mut c.checksum_crc32c,
            Some(Algorithm::Crc64Nvme) => &mut c.checksum_crc64nvme,
            Some(Algorithm::Sha1) => &mut c.checksum_sha1,
            Some(Algorithm::Sha256) => &mut c.checksum_sha256,
            None => continue,
        };
        c.checksum_type = Some(checksum_type(value));
        *slot = Some(value.clone());
    }
    c
}

/// The checksum fields of a request input (or a CompletedPart) as one struct.
macro_rules! given_checksums {
    ($input:expr) => {
        s3s::dto::Checksum {
            checksum_crc32: $input.checksum_crc32.clone(),
            checksum_crc32c: $input.checksum_crc32c.clone(),
            checksum_crc64nvme: $input.checksum_crc64nvme.clone(),
            checksum_sha1: $input.checksum_sha1.clone(),
            checksum_sha256: $input.checksum_sha256.clone(),
            checksum_type: None,
        }
    };
}
pub(crate) use given_checksums;

/// The checksum a PutObject or UploadPart request carries: its input's
/// checksum fields, its headers and its trailers.
macro_rules! requested_checksum {
    ($req:expr, $input:expr) => {
        $crate::checksum::Requested::from_request(
            $input.checksum_algorithm.as_ref(),
            $crate::checksum::given_checksums!($input),
            &$req.headers,
            $req.trailing_headers.clone(),
        )
    };
}
pub(crate) use requested_checksum;

/// Sets the checksum fields of an answer from an s3s checksum struct; with
/// `typed`, also its x-amz-checksum-type.
macro_rules! set_checksums {
    ($dst:expr, $c:expr) => {{
        let c: s3s::dto::Checksum = $c;
        set_checksums!(@values $dst, c);
    }};
    ($dst:expr, $c:expr, typed) => {{
        let c: s3s::dto::Checksum = $c;
        $dst.checksum_type = c.checksum_type.clone();
        set_checksums!(@values $dst, c);
    }};
    (@values $dst:expr, $c:ident) => {
        $dst.checksum_crc32 = $c.checksum_crc32;
        $dst.checksum_crc32c = $c.checksum_crc32c;
        $dst.checksum_crc64nvme = $c.checksum_crc64nvme;
        $dst.checksum_sha1 = $c.checksum_sha1;
        $dst.checksum_sha256 = $c.checksum_sha256;
    };
}
pub(crate) use set_checksums;

fn invalid(message: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, message)
}

fn multiple() -> S3Error {
    invalid(
        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            .into(),
    )
}

fn invalid_sdk_algorithm() -> S3Error {
    invalid("Value for x-amz-sdk-checksum-algorithm header is invalid.".into())
}

/// Parses x-amz-sdk-checksum-algorithm or a ChecksumAlgorithm element.
pub fn parse_algorithm(a: &ChecksumAlgorithm) -> S3Result<Algorithm> {
    Algorithm::from_name(a.as_str()).ok_or_else(invalid_sdk_algorithm)
}

/// The one checksum value given in a request's headers (or a part of a
/// Complete request), checked for form: at most one, base64 of the right size.
pub fn parse_given(given: Checksum) -> S3Result<Option<(Algorithm, Vec<u8>)>> {
    single(pairs(given))
}

fn single(values: Vec<(Algorithm, String)>) -> S3Result<Option<(Algorithm, Vec<u8>)>> {
    let mut values = values.into_iter();
    let Some((algorithm, value)) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(multiple());
    }
    let raw = algorithm.decode(&value).ok_or_else(|| {
        invalid(format!(
            "Value for {} header is invalid.",
            algorithm.header()
        ))
    })?;
    Ok(Some((algorithm, raw)))
}

/// The checksum a PutObject or UploadPart request carries.
pub struct Requested {
    pub algorithm: Algorithm,
    value: Value,
}

enum Value {
    Header(Vec<u8>),
    /// Named by x-amz-trailer; readable once the body has been consumed.
    Trailer(Option<TrailingHeaders>),
}

impl Requested {
    /// What the request asks for: a checksum header, a checksum trailer, and
    /// x-amz-sdk-checksum-algorithm, which must agree with them.
    pub fn from_request(
        sdk_algorithm: Option<&ChecksumAlgorithm>,
        given: Checksum,
        headers: &HeaderMap,
        trailers: Option<TrailingHeaders>,
    ) -> S3Result<Option<Requested>> {
        let mut found = parse_given(given)?.map(|(algorithm, raw)| Requested {
            algorithm,
            value: Value::Header(raw),
        });
        let trailer_names = headers
            .get_all(TRAILER_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|n| n.trim().to_ascii_lowercase());
        for name in trailer_names {
            let Some(suffix) = name.strip_prefix(HEADER_PREFIX) else {
                continue;
            };
            let algorithm = Algorithm::from_name(suffix).ok_or_else(|| {
                invalid("The value specified in the x-amz-trailer header is not supported".into())
            })?;
            if found.is_some() {
                return Err(multiple());
            }
            found = Some(Requested {
                algorithm,
                value: Value::Trailer(trailers.clone()),
            });
        }
        if let Some(sdk) = sdk_algorithm {
            let sdk = parse_algorithm(sdk)?;
            match &found {
                None => {
                    return Err(invalid(
                        "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or x-amz-trailer headers were found.".into(),
                    ));
                }
                Some(r) if r.algorithm != sdk => return Err(invalid_sdk_algorithm()),
                Some(_) => {}
            }
        }
        Ok(found)
    }

    /// Compares the client's value with the one computed over the body.
    pub fn verify(&self, computed: &[(String, String)]) -> S3Result<()> {
        let expected = match &self.value {
            Value::Header(raw) => raw.clone(),
            Value::Trailer(trailers) => {
                let header = self.algorithm.header();
                let sent = trailers
                    .as_ref()
                    .and_then(|t| t.read(|h| h.get(&header).map(|v| v.as_bytes().to_vec())))
                    .flatten();
                trailer_value(self.algorithm, sent)?
            }
        };
        compare(self.algorithm, &expected, computed)
    }
}

/// The digest in a checksum trailer; a trailer named in x-amz-trailer but
/// not sent is malformed.
fn trailer_value(algorithm: Algorithm, sent: Option<Vec<u8>>) -> S3Result<Vec<u8>> {
    let sent = sent.ok_or_else(malformed_trailer)?;
    String::from_utf8(sent)
        .ok()
        .and_then(|v| algorithm.decode(&v))
        .ok_or_else(|| {
            invalid(format!(
                "Value for {} trailing header is invalid.",
                algorithm.header()
            ))
        })
}

fn compare(algorithm: Algorithm, expected: &[u8], computed: &[(String, String)]) -> S3Result<()> {
    let actual = computed
        .iter()
        .find(|(name, _)| name == algorithm.name())
        .and_then(|(_, v)| algorithm.decode(v));
    if actual.as_deref() != Some(expected) {
        return Err(s3_error!(
            BadDigest,
            "The {} you specified did not match the calculated checksum.",
            algorithm.upper()
        ));
    }
    Ok(())
}

fn malformed_trailer() -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("MalformedTrailerError".into()),
        "The request contained trailing data that was not well-formed or did not conform to our published schema.",
    );
    e.set_status_code(http::StatusCode::BAD_REQUEST);
    e
}

/// How a multipart upload's object checksum is made: the algorithm and
/// whether it is FULL_OBJECT (CRCs only) rather than COMPOSITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadChecksum {
    pub algorithm: Algorithm,
    pub full_object: bool,
}

impl UploadChecksum {
    /// From CreateMultipartUpload's x-amz-checksum-algorithm and
    /// x-amz-checksum-type; CRC64NVME is FULL_OBJECT only, SHAs COMPOSITE only.
    pub fn from_request(
        algorithm: Option<&ChecksumAlgorithm>,
        checksum_type: Option<&ChecksumType>,
    ) -> S3Result<Option<UploadChecksum>> {
        let Some(algorithm) = algorithm else {
            return match checksum_type {
                None => Ok(None),
                Some(_) => Err(invalid(
                    "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.".into(),
                )),
            };
        };
        let algorithm = Algorithm::from_name(algorithm.as_str()).ok_or_else(|| {
            invalid("Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]".into())
        })?;
        let full_object = match checksum_type.map(|t| t.as_str()) {
            None => algorithm == Algorithm::Crc64Nvme,
            Some(t) if t.eq_ignore_ascii_case(ChecksumType::FULL_OBJECT) => true,
            Some(t) if t.eq_ignore_ascii_case(ChecksumType::COMPOSITE) => false,
            Some(_) => {
                return Err(invalid(
                    "Value for x-amz-checksum-type header is invalid.".into(),
                ));
            }
        };
        let allowed = if full_object {
            algorithm.crc().is_some()
        } else {
            algorithm != Algorithm::Crc64Nvme
        };
        if !allowed {
            let kind = if full_object {
                "FULL_OBJECT"
            } else {
                "COMPOSITE"
            };
            return Err(invalid(format!(
                "The {kind} checksum type cannot be used with the {} checksum algorithm.",
                algorithm.name()
            )));
        }
        Ok(Some(UploadChecksum {
            algorithm,
            full_object,
        }))
    }

    pub fn checksum_algorithm(self) -> ChecksumAlgorithm {
        ChecksumAlgorithm::from_static(self.algorithm.upper())
    }

    pub fn checksum_type(self) -> ChecksumType {
        ChecksumType::from_static(if self.full_object {
            ChecksumType::FULL_OBJECT
        } else {
            ChecksumType::COMPOSITE
        })
    }

    /// The object checksum from the parts' values (base64) and sizes, in
    /// order: FULL_OBJECT combines the CRCs as if computed over the whole
    /// body; COMPOSITE hashes the concatenated raw part digests, suffix `-N`.
    /// None when a part value is missing or malformed.
    pub fn combine(self, parts: &[(Option<&str>, u64)]) -> Option<String> {
        let a = self.algorithm;
        let mut raw = Vec::with_capacity(parts.len());
        for (value, _) in parts {
            raw.push(a.decode((*value)?)?);
        }
        match a.crc().filter(|_| self.full_object) {
            Some(crc) => {
                let mut total: Option<u64> = None;
                for (digest, (_, size)) in raw.iter().zip(parts) {
                    let value = digest
                        .iter()
                        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                    total = Some(match total {
                        None => value,
                        Some(t) => crc_fast::checksum_combine(crc, t, value, *size),
                    });
                }
                let bytes = total?.to_be_bytes();
                Some(BASE64.encode(&bytes[bytes.len() - a.digest_len()..]))
            }
            None => {
                let mut h = Hasher::new(&[a]);
                for digest in &raw {
                    h.update(digest);
                }
                let (_, value) = h.finalize().pop()?;
                Some(format!("{value}-{}", parts.len()))
            }
        }
    }
}

/// The algorithms an UploadPart hashes: the upload's own (a part must not
/// bring another, as in S3), or else the part's and the CRC64NVME default
/// the completed object gets.
pub fn part_algorithms(
    upload: Option<UploadChecksum>,
    requested: Option<&Requested>,
) -> S3Result<Vec<Algorithm>> {
    let asked = requested.map(|r| r.algorithm);
    match upload {
        Some(u) => match asked {
            Some(a) if a != u.algorithm => Err(invalid(format!(
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                u.algorithm.name(),
                a.name()
            ))),
            _ => Ok(vec![u.algorithm]),
        },
        None => Ok(match asked {
            Some(a) if a != DEFAULT_ALGORITHM => vec![a, DEFAULT_ALGORITHM],
            _ => vec![DEFAULT_ALGORITHM],
        }),
    }
}

/// Checks the checksum a CompleteMultipartUpload request gives for one part
/// against the part as stored. A COMPOSITE upload needs one for every part.
pub fn check_part(
    upload: Option<UploadChecksum>,
    part_number: i32,
    given: Checksum,
    stored: &[(String, String)],
) -> S3Result<()> {
    match parse_given(given)? {
        None => match upload {
            Some(u) if !u.full_object => Err(invalid(format!(
                "The upload was created using a {} checksum. The complete request must include the checksum for each part. It was missing for part {part_number} in the request.",
                u.algorithm.name()
            ))),
            _ => Ok(()),
        },
        Some((algorithm, raw)) => {
            let matches = stored
                .iter()
                .find(|(name, _)| name == algorithm.name())
                .and_then(|(_, v)| algorithm.decode(v))
                .is_some_and(|v| v == raw);
            if matches {
                Ok(())
            } else {
                Err(s3_error!(
                    InvalidPart,
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not have matched the part's entity tag."
                ))
            }
        }
    }
}

/// The checksum of a completed multipart object from its parts' stored
/// checksums and sizes: the upload's algorithm, or else S3's default
/// (FULL_OBJECT CRC64NVME), when every part has it.
pub fn object_checksum(
    upload: Option<UploadChecksum>,
    parts: &[(&[(String, String)], u64)],
) -> Vec<(String, String)> {
    let u = upload.unwrap_or(UploadChecksum {
        algorithm: DEFAULT_ALGORITHM,
        full_object: true,
    });
    let values: Vec<(Option<&str>, u64)> = parts
        .iter()
        .map(|(stored, size)| {
            let value = stored
                .iter()
                .find(|(name, _)| name == u.algorithm.name())
                .map(|(_, v)| v.as_str());
            (value, *size)
        })
        .collect();
    u.combine(&values)
        .map(|v| vec![(u.algorithm.name().to_string(), v)])
        .unwrap_or_default()
}

/// Checks a whole-object checksum given to CompleteMultipartUpload against
/// the computed one (a COMPOSITE value may be given with or without `-N`).
pub fn check_object(given: Checksum, computed: &[(String, String)]) -> S3Result<()> {
    let without_suffix = |v: &str| v.split('-').next().unwrap_or_default().to_string();
    let given = pairs(given)
        .into_iter()
        .map(|(a, v)| (a, without_suffix(&v)))
        .collect();
    let Some((algorithm, raw)) = single(given)? else {
        return Ok(());
    };
    let matches = computed
        .iter()
        .find(|(name, _)| name == algorithm.name())
        .and_then(|(_, v)| algorithm.decode(&without_suffix(v)))
        .is_some_and(|v| v == raw);
    if matches {
        Ok(())
    } else {
        Err(s3_error!(
            BadDigest,
            "The {} you specified did not match the calculated checksum.",
            algorithm.upper()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn computed(a: Algorithm, body: &[u8]) -> Vec<(String, String)> {
        let mut h = Hasher::new(&[a]);
        h.update(body);
        h.finalize()
    }

    #[test]
    fn crc32_of_known_text_matches_s3() {
        // S3's documented example: CRC32 of "hello\n" is NjowIA==.
        assert_eq!(computed(Algorithm::Crc32, b"hello\n")[0].1, "NjowIA==");
    }

    #[test]
    fn full_object_crc_of_parts_equals_crc_of_whole() {
        let whole = b"the quick brown fox jumps over the lazy dog";
        let (a, b) = whole.split_at(17);
        for alg in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let pa = computed(alg, a).pop().unwrap().1;
            let pb = computed(alg, b).pop().unwrap().1;
            let upload = UploadChecksum {
                algorithm: alg,
                full_object: true,
            };
            let combined = upload
                .combine(&[(Some(&pa), a.len() as u64), (Some(&pb), b.len() as u64)])
                .unwrap();
            assert_eq!(combined, computed(alg, whole).pop().unwrap().1, "{alg:?}");
        }
    }

    #[test]
    fn composite_hashes_the_raw_part_digests() {
        let pa = computed(Algorithm::Sha256, b"one").pop().unwrap().1;
        let pb = computed(Algorithm::Sha256, b"two").pop().unwrap().1;
        let mut raw = BASE64.decode(&pa).unwrap();
        raw.extend(BASE64.decode(&pb).unwrap());
        let expected = format!("{}-2", computed(Algorithm::Sha256, &raw).pop().unwrap().1);
        let upload = UploadChecksum {
            algorithm: Algorithm::Sha256,
            full_object: false,
        };
        assert_eq!(
            upload.combine(&[(Some(&pa), 3), (Some(&pb), 3)]),
            Some(expected)
        );
        assert_eq!(upload.combine(&[(None, 3)]), None);
    }

    #[test]
    fn a_trailer_that_does_not_match_the_body_is_bad_digest() {
        let crc = computed(Algorithm::Crc32, b"hello\n");
        let check = |sent: Option<&str>| {
            trailer_value(Algorithm::Crc32, sent.map(|s| s.as_bytes().to_vec()))
                .and_then(|expected| compare(Algorithm::Crc32, &expected, &crc))
        };
        check(Some("NjowIA==")).unwrap();
        assert_eq!(
            *check(Some("AAAAAA==")).unwrap_err().code(),
            S3ErrorCode::BadDigest
        );
        assert_eq!(
            *check(Some("not base64")).unwrap_err().code(),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            check(None).unwrap_err().code().as_str(),
            "MalformedTrailerError"
        );
    }

    #[test]
    fn only_crcs_are_full_object_and_crc64nvme_only_full_object() {
        let alg = |s: &'static str| ChecksumAlgorithm::from_static(s);
        let ty = |s: &'static str| ChecksumType::from_static(s);
        let parse = |a: &'static str, t: Option<&'static str>| {
            UploadChecksum::from_request(Some(&alg(a)), t.map(ty).as_ref())
        };
        assert!(!parse("CRC32", None).unwrap().unwrap().full_object);
        assert!(
            parse("CRC32", Some("FULL_OBJECT"))
                .unwrap()
                .unwrap()
                .full_object
        );
        assert!(parse("CRC64NVME", None).unwrap().unwrap().full_object);
        assert!(parse("CRC64NVME", Some("COMPOSITE")).is_err());
        assert!(parse("SHA256", Some("FULL_OBJECT")).is_err());
        assert!(
            !parse("SHA1", Some("COMPOSITE"))
                .unwrap()
                .unwrap()
                .full_object
        );
        assert!(UploadChecksum::from_request(None, Some(&ty("COMPOSITE"))).is_err());
    }

    #[test]
    fn headers_must_be_single_and_well_formed() {
        let two = Checksum {
            checksum_crc32: Some("NjowIA==".into()),
            checksum_sha1: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
            ..Default::default()
        };
        assert!(parse_given(two).is_err());
        let short = Checksum {
            checksum_sha256: Some("NjowIA==".into()),
            ..Default::default()
        };
        assert!(parse_given(short).is_err());
        let sdk_only = Requested::from_request(
            Some(&ChecksumAlgorithm::from_static("CRC32")),
            Checksum::default(),
            &HeaderMap::new(),
            None,
        );
        assert!(sdk_only.is_err());
    }
}
