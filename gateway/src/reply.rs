//! Adjustments to s3s's answers where they differ from what S3 sends, made
//! around the s3s service (the wire shape is fixed inside s3s):
//!
//! - every answer carries `x-amz-request-id` and `x-amz-id-2`, and an error
//!   document carries the same `<RequestId>`;
//! - GetObjectAttributes answers the ETag unquoted, as S3 does (s3s quotes
//!   every ETag element);
//! - a browser POST upload whose policy conditions fail is 403 AccessDenied
//!   "Invalid according to Policy", not 400 InvalidPolicyDocument (which S3
//!   keeps for a policy that does not parse).
//!
//! Only small XML answers (errors, attributes) are read into memory.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;

/// Answers read whole to be adjusted are never larger than this.
const MAX_ADJUSTED_BODY: usize = 1024 * 1024;

/// What about the request decides how its answer is adjusted.
pub(crate) struct Asked {
    request_id: String,
    attributes: bool,
    post_upload: bool,
}

impl Asked {
    pub(crate) fn of<B>(req: &Request<B>) -> Asked {
        let query = req.uri().query().unwrap_or("");
        let attributes = req.method() == Method::GET
            && query
                .split('&')
                .any(|p| p == "attributes" || p == "attributes=");
        let post_upload = req.method() == Method::POST
            && req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
        Asked {
            request_id: new_request_id(),
            attributes,
            post_upload,
        }
    }
}

/// SigV2 signs a path-style bucket as `/bucket/` (botocore's auth path, as
/// S3 canonicalizes it) while the request line says `/bucket`; s3s checks
/// the signature against the request line, so such a request gets the
/// slash it was signed with. SigV4 requests are left alone.
pub(crate) fn sigv2_bucket_path<B>(mut req: Request<B>) -> Request<B> {
    let v2_header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes().starts_with(b"AWS "));
    let query = req.uri().query().unwrap_or("");
    let v2_query = query.split('&').any(|p| p.starts_with("AWSAccessKeyId="));
    let path = req.uri().path();
    let bucket_only = path.len() > 1 && !path[1..].contains('/');
    if !(v2_header || v2_query) || !bucket_only {
        return req;
    }
    let rebuilt = if query.is_empty() {
        format!("{path}/")
    } else {
        format!("{path}/?{query}")
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = http::uri::PathAndQuery::try_from(rebuilt) {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// 16 upper-case hex digits, like S3's request ids.
fn new_request_id() -> String {
    hex::encode_upper(rand::random::<[u8; 8]>())
}

pub(crate) async fn adjust(asked: Asked, response: Response<s3s::Body>) -> Response<s3s::Body> {
    let (mut parts, body) = response.into_parts();
    if let Ok(id) = HeaderValue::from_str(&asked.request_id) {
        parts.headers.insert("x-amz-request-id", id.clone());
        parts.headers.insert("x-amz-id-2", id);
    }
    let is_xml = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/xml"));
    let error = parts.status.is_client_error() || parts.status.is_server_error();
    let wanted = is_xml && (error || (asked.attributes && parts.status == StatusCode::OK));
    let small = http_body::Body::size_hint(&body)
        .exact()
        .is_some_and(|len| len <= MAX_ADJUSTED_BODY as u64);
    if !wanted || !small {
        return Response::from_parts(parts, body);
    }
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "answer body unreadable; sent as an error");
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
            Bytes::new()
        }
    };
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if error {
        if asked.post_upload && post_policy_failed(&text) {
            parts.status = StatusCode::FORBIDDEN;
            text = text.replace(
                "<Code>InvalidPolicyDocument</Code>",
                "<Code>AccessDenied</Code>",
            );
            text = text.replace("<Message>", "<Message>Invalid according to Policy: ");
        }
        if !text.contains("<RequestId>")
            && let Some(end) = text.rfind("</Error>")
        {
            text.insert_str(end, &format!("<RequestId>{}</RequestId>", asked.request_id));
        }
    } else {
        text = unquote_etag(&text);
    }
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(text.len() as u64),
    );
    Response::from_parts(parts, s3s::Body::from(text))
}

/// s3s's messages for POST policy conditions that do not hold.
fn post_policy_failed(text: &str) -> bool {
    text.contains("<Code>InvalidPolicyDocument</Code>")
        && (text.contains("Policy condition") || text.contains("does not match bucket in URL"))
}

/// `<ETag>"x"</ETag>` -> `<ETag>x</ETag>` (GetObjectAttributes has one, at the top).
fn unquote_etag(text: &str) -> String {
    match (text.find("<ETag>\""), text.find("\"</ETag>")) {
        (Some(start), Some(end)) if start < end => {
            let mut out = String::with_capacity(text.len());
            out.push_str(&text[..start + "<ETag>".len()]);
            out.push_str(&text[start + "<ETag>\"".len()..end]);
            out.push_str(&text[end + 1..]);
            out
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigv2_bucket_requests_get_the_path_they_were_signed_with() {
        let v2 = |uri: &str| {
            let req = Request::get(uri)
                .header("authorization", "AWS key:sig")
                .body(())
                .unwrap();
            sigv2_bucket_path(req).uri().to_string()
        };
        assert_eq!(v2("/bucket"), "/bucket/");
        assert_eq!(v2("/bucket?versioning"), "/bucket/?versioning");
        assert_eq!(v2("/bucket/key"), "/bucket/key");
        assert_eq!(v2("/"), "/");
        let v4 = Request::get("/bucket")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=x")
            .body(())
            .unwrap();
        assert_eq!(sigv2_bucket_path(v4).uri(), "/bucket");
    }

    #[test]
    fn the_attributes_etag_loses_its_quotes_only() {
        let xml = r#"<GetObjectAttributesOutput><ETag>"abc-2"</ETag><ObjectSize>3</ObjectSize></GetObjectAttributesOutput>"#;
        assert_eq!(
            unquote_etag(xml),
            "<GetObjectAttributesOutput><ETag>abc-2</ETag><ObjectSize>3</ObjectSize></GetObjectAttributesOutput>"
        );
        assert_eq!(unquote_etag("<A>no etag</A>"), "<A>no etag</A>");
    }

    #[tokio::test]
    async fn errors_carry_the_request_id_of_the_header() {
        let req = Request::get("/b/k").body(()).unwrap();
        let xml = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>";
        let response = Response::builder()
            .status(404)
            .header("content-type", "application/xml")
            .header("content-length", xml.len())
            .body(s3s::Body::from(xml.to_string()))
            .unwrap();
        let adjusted = adjust(Asked::of(&req), response).await;
        let id = adjusted.headers()["x-amz-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let body = adjusted.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.ends_with(&format!("<RequestId>{id}</RequestId></Error>")),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_failed_post_policy_condition_is_access_denied() {
        let req = Request::post("/b")
            .header("content-type", "multipart/form-data; boundary=x")
            .body(())
            .unwrap();
        let xml = "<Error><Code>InvalidPolicyDocument</Code><Message>Policy condition 'eq' for field 'key' failed</Message></Error>";
        let response = Response::builder()
            .status(400)
            .header("content-type", "application/xml")
            .header("content-length", xml.len())
            .body(s3s::Body::from(xml.to_string()))
            .unwrap();
        let adjusted = adjust(Asked::of(&req), response).await;
        assert_eq!(adjusted.status(), StatusCode::FORBIDDEN);
        let body = adjusted.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
        assert!(body.contains("Invalid according to Policy: Policy condition"));
    }
}
