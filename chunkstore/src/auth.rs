//! SigV4 signing and verification of internal requests.
//!
//! Every internal request is signed with AWS SigV4 (aws-sigv4) under the
//! cluster secret. Signed: the method, the path and query, the `host` header,
//! `x-amz-date`, `x-amz-content-sha256` and every `x-fd-*` header. The
//! receiver rebuilds the same signable request from what it received,
//! recomputes the signature with the same crate and compares the whole
//! `Authorization` header in constant time.
//!
//! `x-amz-content-sha256` is the hex SHA-256 of the body, which the receiver
//! checks once it has read the body, or `UNSIGNED-PAYLOAD` for chunk bodies,
//! whose integrity comes from the signed `x-fd-crc32c` header instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::HeaderMap;
use http::header::{AUTHORIZATION, HOST};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::limits::MAX_CLOCK_SKEW;
use crate::wire;

/// The one access key id of the cluster; the secret is the cluster secret.
pub const ACCESS_KEY_ID: &str = "flexdrive-cluster";
pub const REGION: &str = "flexdrive";
pub const SERVICE: &str = "flexdrive";
pub const CONTENT_SHA256: &str = "x-amz-content-sha256";
pub const AMZ_DATE: &str = "x-amz-date";
/// Payload marker for bodies not covered by the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// SHA-256 of the empty body, for GET and DELETE.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Prefix of the Flexdrive headers, all of which are signed.
pub const FD_HEADER_PREFIX: &str = "x-fd-";

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("request is not signed")]
    Missing,
    #[error("malformed signed request: {0}")]
    Malformed(String),
    #[error("unknown access key id")]
    WrongAccessKey,
    #[error("request time is more than 15 minutes away from the node's clock")]
    Stale,
    #[error("signature does not match")]
    BadSignature,
    #[error("cannot sign request: {0}")]
    Signing(String),
}

/// What the signature says about the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifiedPayload {
    /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature.
    Unsigned,
    /// The body's SHA-256 is signed; check it with [`VerifiedPayload::matches`].
    Sha256([u8; 32]),
}

impl VerifiedPayload {
    /// True when `body` is what the signer signed (always for `Unsigned`).
    pub fn matches(&self, body: &[u8]) -> bool {
        match self {
            VerifiedPayload::Unsigned => true,
            VerifiedPayload::Sha256(expected) => {
                let actual: [u8; 32] = Sha256::digest(body).into();
                bool::from(actual.ct_eq(expected))
            }
        }
    }
}

/// Hex SHA-256 of a body, for `x-amz-content-sha256`.
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Signs `req` in place: sets `host`, `x-amz-content-sha256` (= `body_sha256`:
/// a hex SHA-256 or [`UNSIGNED_PAYLOAD`]), `x-amz-date` and `authorization`.
/// The URI must be absolute (`http://host:port/path?query`) unless the
/// request already carries a `host` header.
pub fn sign_request<B>(
    req: &mut http::Request<B>,
    secret: &str,
    body_sha256: &str,
    now: SystemTime,
) -> Result<(), AuthError> {
    let host = match req.headers().get(HOST) {
        Some(h) => h.clone(),
        None => {
            let authority = req
                .uri()
                .authority()
                .ok_or_else(|| AuthError::Signing("URI has no host".into()))?;
            http::HeaderValue::from_str(authority.as_str())
                .map_err(|e| AuthError::Signing(e.to_string()))?
        }
    };
    let content = http::HeaderValue::from_str(body_sha256)
        .map_err(|e| AuthError::Signing(format!("bad payload hash: {e}")))?;
    let headers = req.headers_mut();
    headers.insert(HOST, host);
    headers.insert(CONTENT_SHA256, content);
    headers.remove(AUTHORIZATION);
    headers.remove(AMZ_DATE);

    let uri = absolute_uri(req.uri(), req.headers())?;
    let (authorization, amz_date) = authorization_for(
        req.method().as_str(),
        &uri,
        req.headers(),
        body_sha256,
        secret,
        now,
    )
    .map_err(|e| match e {
        AuthError::Malformed(m) => AuthError::Signing(m),
        other => other,
    })?;
    let headers = req.headers_mut();
    headers.insert(AMZ_DATE, value(&amz_date)?);
    let mut auth = value(&authorization)?;
    auth.set_sensitive(true);
    headers.insert(AUTHORIZATION, auth);
    Ok(())
}

fn value(s: &str) -> Result<http::HeaderValue, AuthError> {
    http::HeaderValue::from_str(s).map_err(|e| AuthError::Signing(e.to_string()))
}

/// Checks the signature of a received request. On success, tells whether the
/// body's SHA-256 is signed; the caller must then check the body with
/// [`VerifiedPayload::matches`] before acting on it.
pub fn verify_request(
    parts: &http::request::Parts,
    secret: &str,
    now: SystemTime,
) -> Result<VerifiedPayload, AuthError> {
    let received = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .as_bytes();
    let credential = std::str::from_utf8(received)
        .ok()
        .and_then(|s| s.strip_prefix(ALGORITHM))
        .and_then(|s| s.strip_prefix(" Credential="))
        .ok_or_else(|| AuthError::Malformed("authorization header".into()))?;
    let access_key = credential
        .split('/')
        .next()
        .ok_or_else(|| AuthError::Malformed("credential".into()))?;
    if access_key != ACCESS_KEY_ID {
        return Err(AuthError::WrongAccessKey);
    }

    let date = parts
        .headers
        .get(AMZ_DATE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AuthError::Malformed("x-amz-date missing".into()))?;
    let signed_at =
        parse_amz_date(date).ok_or_else(|| AuthError::Malformed("x-amz-date".into()))?;
    let skew = match now.duration_since(signed_at) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > MAX_CLOCK_SKEW {
        return Err(AuthError::Stale);
    }

    let payload = parts
        .headers
        .get(CONTENT_SHA256)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AuthError::Malformed("x-amz-content-sha256 missing".into()))?;
    let verified = if payload == UNSIGNED_PAYLOAD {
        VerifiedPayload::Unsigned
    } else {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(payload, &mut hash)
            .map_err(|_| AuthError::Malformed("x-amz-content-sha256".into()))?;
        VerifiedPayload::Sha256(hash)
    };

    let uri = absolute_uri(&parts.uri, &parts.headers)?;
    let (expected, _) = authorization_for(
        parts.method.as_str(),
        &uri,
        &parts.headers,
        payload,
        secret,
        signed_at,
    )?;
    if bool::from(expected.as_bytes().ct_eq(received)) {
        Ok(verified)
    } else {
        Err(AuthError::BadSignature)
    }
}

/// When a request was signed, by its sender's clock (its `x-amz-date`).
pub fn signed_at(parts: &http::request::Parts) -> Option<SystemTime> {
    parse_amz_date(parts.headers.get(AMZ_DATE)?.to_str().ok()?)
}

/// `http://{host}{path?query}`: the URI both sides sign, whatever form the
/// request line had on the wire.
fn absolute_uri(uri: &http::Uri, headers: &HeaderMap) -> Result<String, AuthError> {
    let host = match headers.get(HOST) {
        Some(h) => h
            .to_str()
            .map_err(|_| AuthError::Malformed("host header".into()))?,
        None => uri
            .authority()
            .map(|a| a.as_str())
            .ok_or_else(|| AuthError::Malformed("no host".into()))?,
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Ok(format!("http://{host}{path}"))
}

/// The `Authorization` and `x-amz-date` headers aws-sigv4 computes for
/// this request.
fn authorization_for(
    method: &str,
    uri: &str,
    headers: &HeaderMap,
    payload: &str,
    secret: &str,
    time: SystemTime,
) -> Result<(String, String), AuthError> {
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for (name, value) in headers {
        let name = name.as_str();
        if name == HOST.as_str() || name == CONTENT_SHA256 || name.starts_with(FD_HEADER_PREFIX) {
            let value = value
                .to_str()
                .map_err(|_| AuthError::Malformed(format!("header {name} is not text")))?;
            signed.push((name, value));
        }
    }

    let identity: Identity =
        Credentials::new(ACCESS_KEY_ID, secret, None, None, "flexdrive").into();
    let mut settings = SigningSettings::default();
    // x-amz-content-sha256 travels as an ordinary signed header (above), so
    // signer and verifier feed aws-sigv4 exactly the same request.
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| AuthError::Signing(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        method,
        uri,
        signed.into_iter(),
        SignableBody::Precomputed(payload.to_string()),
    )
    .map_err(|e| AuthError::Malformed(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| AuthError::Malformed(e.to_string()))?
        .into_parts();
    let find = |wanted: &str| {
        instructions
            .headers()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| AuthError::Signing(format!("aws-sigv4 produced no {wanted} header")))
    };
    Ok((find(AUTHORIZATION.as_str())?, find(AMZ_DATE)?))
}

/// The key answer tags are made with: derived from the cluster secret under
/// its own label, so that no tag can be taken for a request signature.
fn answer_key(secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"flexdrive answer v1\0");
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// Bytes of an answer tag (hex in the header).
const ANSWER_TAG_LEN: usize = 16;

/// The tag a node puts on its answer to a signed request: HMAC-SHA256 over
/// the request's `Authorization` value (so an answer fits one request only
/// and cannot be replayed to another), the status and `content`: the hex
/// SHA-256 of the body, or for chunk data the signed `x-fd-crc32c` and
/// `x-fd-size` values (the data is checked against those).
pub fn answer_tag(
    secret: &str,
    request_authorization: &[u8],
    status: u16,
    content: &str,
) -> String {
    hex::encode(answer_mac(secret, request_authorization, status, content))
}

fn answer_mac(
    secret: &str,
    request_authorization: &[u8],
    status: u16,
    content: &str,
) -> [u8; ANSWER_TAG_LEN] {
    use hmac::Mac;
    // Any key length is valid for HMAC.
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&answer_key(secret))
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(request_authorization);
    mac.update(b"\n");
    mac.update(status.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(content.as_bytes());
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; ANSWER_TAG_LEN];
    tag.copy_from_slice(&full[..ANSWER_TAG_LEN]);
    tag
}

/// Whether `tag` (hex) is the right tag for this answer; constant time.
pub fn verify_answer_tag(
    secret: &str,
    request_authorization: &[u8],
    status: u16,
    content: &str,
    tag: &str,
) -> bool {
    let mut got = [0u8; ANSWER_TAG_LEN];
    if hex::decode_to_slice(tag, &mut got).is_err() {
        return false;
    }
    let want = answer_mac(secret, request_authorization, status, content);
    bool::from(want.ct_eq(&got))
}

/// What an answer tag covers besides the request and the status: for chunk
/// data the checksum and size headers, for anything else the body's hash;
/// and the answering node's name and clock, which callers go by.
pub fn answer_content<'a>(header: impl Fn(&str) -> Option<&'a str>, body: &[u8]) -> String {
    let content = match header(wire::header::CRC32C) {
        Some(crc) => format!("chunk:{crc}:{}", header(wire::header::SIZE).unwrap_or("")),
        None => sha256_hex(body),
    };
    match (header(wire::header::SENDER), header(wire::header::TIME)) {
        (None, None) => content,
        (sender, time) => format!(
            "{content}\nclock:{}:{}",
            sender.unwrap_or(""),
            time.unwrap_or("")
        ),
    }
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC, as SigV4 writes `x-amz-date`.
#[cfg(test)]
fn format_amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as i64, d as i64);
    if days < 0 {
        return None;
    }
    let secs = days as u64 * 86_400 + h * 3600 + mi * 60 + se;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "cluster-secret";

    fn signed(body: &[u8], now: SystemTime) -> http::request::Parts {
        let mut req = http::Request::builder()
            .method("PUT")
            .uri("http://127.0.0.1:7001/meta/objects/merge?x=a%20b&a=1")
            .header("x-fd-crc32c", "0000abcd")
            .header("user-agent", "not signed")
            .body(())
            .unwrap();
        sign_request(&mut req, SECRET, &sha256_hex(body), now).unwrap();
        let (mut parts, ()) = req.into_parts();
        // On the wire the request line is in origin form.
        parts.uri = parts
            .uri
            .path_and_query()
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        parts
    }

    #[test]
    fn round_trip_verifies_and_reports_the_body_hash() {
        let now = SystemTime::now();
        let parts = signed(b"body", now);
        let payload = verify_request(&parts, SECRET, now).unwrap();
        assert!(payload.matches(b"body"));
        assert!(!payload.matches(b"other"));
        // Unsigned headers may change on the way.
        let mut parts = parts;
        parts
            .headers
            .insert("user-agent", "changed".parse().unwrap());
        assert!(verify_request(&parts, SECRET, now + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn unsigned_payload_round_trip() {
        let now = SystemTime::now();
        let mut req = http::Request::builder()
            .method("PUT")
            .uri("http://node:1/chunks/00")
            .body(())
            .unwrap();
        sign_request(&mut req, SECRET, UNSIGNED_PAYLOAD, now).unwrap();
        let (parts, ()) = req.into_parts();
        assert_eq!(
            verify_request(&parts, SECRET, now).unwrap(),
            VerifiedPayload::Unsigned
        );
    }

    #[test]
    fn tampering_fails() {
        let now = SystemTime::now();
        let mut p = signed(b"body", now);
        p.headers.insert("x-fd-crc32c", "0000abce".parse().unwrap());
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::BadSignature)
        ));

        let mut p = signed(b"body", now);
        p.headers.insert("x-fd-extra", "1".parse().unwrap());
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::BadSignature)
        ));

        let mut p = signed(b"body", now);
        p.uri = "/meta/buckets/merge?x=a%20b&a=1".parse().unwrap();
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::BadSignature)
        ));

        let mut p = signed(b"body", now);
        p.uri = "/meta/objects/merge?x=a%20b&a=2".parse().unwrap();
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::BadSignature)
        ));

        let mut p = signed(b"body", now);
        p.method = http::Method::DELETE;
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::BadSignature)
        ));

        let mut p = signed(b"body", now);
        p.headers
            .insert(CONTENT_SHA256, sha256_hex(b"evil").parse().unwrap());
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::BadSignature)
        ));

        let mut p = signed(b"body", now);
        p.headers.insert(HOST, "127.0.0.1:7002".parse().unwrap());
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn wrong_secret_fails() {
        let now = SystemTime::now();
        let p = signed(b"body", now);
        assert!(matches!(
            verify_request(&p, "other", now),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn stale_or_future_signature_fails() {
        let now = SystemTime::now();
        let p = signed(b"body", now - Duration::from_secs(16 * 60));
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::Stale)
        ));
        let p = signed(b"body", now + Duration::from_secs(16 * 60));
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::Stale)
        ));
        let p = signed(b"body", now - Duration::from_secs(14 * 60));
        assert!(verify_request(&p, SECRET, now).is_ok());
    }

    #[test]
    fn missing_or_garbled_authorization_fails() {
        let now = SystemTime::now();
        let mut p = signed(b"body", now);
        p.headers.remove(AUTHORIZATION);
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::Missing)
        ));

        let mut p = signed(b"body", now);
        p.headers
            .insert(AUTHORIZATION, "Basic Zm9vOmJhcg==".parse().unwrap());
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::Malformed(_))
        ));

        let mut p = signed(b"body", now);
        let auth = p.headers[AUTHORIZATION]
            .to_str()
            .unwrap()
            .replace(ACCESS_KEY_ID, "someone");
        p.headers.insert(AUTHORIZATION, auth.parse().unwrap());
        assert!(matches!(
            verify_request(&p, SECRET, now),
            Err(AuthError::WrongAccessKey)
        ));

        let mut p = signed(b"body", now);
        p.headers.remove(AMZ_DATE);
        assert!(verify_request(&p, SECRET, now).is_err());
    }

    #[test]
    fn answer_tags_bind_the_answer_to_its_request() {
        let no_headers = |_: &str| None;
        let content = answer_content(no_headers, b"answer");
        let tag = answer_tag(SECRET, b"AWS4 request one", 200, &content);
        assert!(verify_answer_tag(
            SECRET,
            b"AWS4 request one",
            200,
            &content,
            &tag
        ));
        assert!(!verify_answer_tag(
            SECRET,
            b"AWS4 request two",
            200,
            &content,
            &tag
        ));
        assert!(!verify_answer_tag(
            SECRET,
            b"AWS4 request one",
            404,
            &content,
            &tag
        ));
        let other = answer_content(no_headers, b"forged");
        assert!(!verify_answer_tag(
            SECRET,
            b"AWS4 request one",
            200,
            &other,
            &tag
        ));
        assert!(!verify_answer_tag(
            "other",
            b"AWS4 request one",
            200,
            &content,
            &tag
        ));
        assert!(!verify_answer_tag(
            SECRET,
            b"AWS4 request one",
            200,
            &content,
            "zz"
        ));
        let chunk_headers = |name: &str| match name {
            wire::header::CRC32C => Some("0000abcd"),
            wire::header::SIZE => Some("5"),
            _ => None,
        };
        let chunk = answer_content(chunk_headers, b"ignored");
        assert_eq!(chunk, answer_content(chunk_headers, b"other bytes"));
        let clock_headers = |time: &'static str| {
            move |name: &str| match name {
                wire::header::SENDER => Some("node-1"),
                wire::header::TIME => Some(time),
                _ => None,
            }
        };
        assert_ne!(
            answer_content(clock_headers("1000"), b"answer"),
            answer_content(clock_headers("2000"), b"answer"),
            "the tag covers the node's clock"
        );
    }

    #[test]
    fn amz_date_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_amz_date(t), "20231114T221320Z");
        assert_eq!(parse_amz_date("20231114T221320Z"), Some(t));
        assert_eq!(parse_amz_date("2023-11-14T22:13"), None);
        assert_eq!(parse_amz_date("20231314T221320Z"), None);
    }
}
