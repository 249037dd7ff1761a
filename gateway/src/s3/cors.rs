//! Put/Get/DeleteBucketCors, and CORS for browsers: the answer to a
//! preflight `OPTIONS` request and the `Access-Control-*` headers of normal
//! answers, both from the bucket's rules. s3s routes no OPTIONS requests, so
//! the HTTP layer (server.rs) calls in here before and after s3s; the rules
//! are cached briefly so that browser traffic costs no quorum read per request.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Gateway, Inner};
use crate::cache::TtlCache;
use crate::limits::{CORS_CACHE_ENTRIES, CORS_CACHE_TTL, MAX_CORS_RULES, MAX_RULE_ID_LEN};
use crate::store::model::CorsRule;

/// The methods a CORS rule may allow (S3's list).
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

type Rules = Option<Arc<Vec<CorsRule>>>;

/// Recently read CORS rules per bucket name (None: no configuration, or no
/// such bucket).
pub(crate) struct CorsCache(TtlCache<Rules>);

impl Default for CorsCache {
    fn default() -> Self {
        CorsCache(TtlCache::new(CORS_CACHE_TTL, CORS_CACHE_ENTRIES))
    }
}

impl CorsCache {
    fn get(&self, bucket: &str) -> Option<Rules> {
        self.0.get(bucket)
    }

    fn put(&self, bucket: &str, rules: Rules) {
        self.0.insert(bucket, rules);
    }

    /// Drops a bucket's entry, after this gateway changed or deleted it.
    pub fn forget(&self, bucket: &str) {
        self.0.forget(bucket);
    }
}

/// `pattern` with at most one `*` standing for any run of characters.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value.starts_with(head)
                && value.ends_with(tail)
        }
    }
}

fn invalid(message: String) -> s3s::S3Error {
    s3_error!(InvalidRequest, "{message}")
}

/// Checks a configuration as S3 does and turns it into stored rules.
fn rules_from(config: CORSConfiguration) -> S3Result<Vec<CorsRule>> {
    let rules = config.cors_rules;
    if rules.is_empty() || rules.len() > MAX_CORS_RULES {
        return Err(s3_error!(
            MalformedXML,
            "a CORS configuration has 1 to {MAX_CORS_RULES} rules"
        ));
    }
    rules
        .into_iter()
        .map(|r| {
            if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
                return Err(s3_error!(
                    MalformedXML,
                    "every CORSRule needs an AllowedOrigin and an AllowedMethod"
                ));
            }
            if r.id.as_ref().is_some_and(|id| id.len() > MAX_RULE_ID_LEN) {
                return Err(s3_error!(
                    InvalidArgument,
                    "ID length should not exceed allowed limit of {MAX_RULE_ID_LEN}"
                ));
            }
            if let Some(m) = r.allowed_methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
                return Err(invalid(format!(
                    "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                )));
            }
            if let Some(o) = r.allowed_origins.iter().find(|o| o.matches('*').count() > 1) {
                return Err(invalid(format!(
                    "AllowedOrigin \"{o}\" can not have more than one wildcard."
                )));
            }
            let allowed_headers = r.allowed_headers.unwrap_or_default();
            if let Some(h) = allowed_headers.iter().find(|h| h.matches('*').count() > 1) {
                return Err(invalid(format!(
                    "AllowedHeader \"{h}\" can not have more than one wildcard."
                )));
            }
            let expose_headers = r.expose_headers.unwrap_or_default();
            if let Some(h) = expose_headers.iter().find(|h| h.contains('*')) {
                return Err(invalid(format!(
                    "ExposeHeader \"{h}\" contains wildcard. We currently do not support wildcard for ExposeHeader."
                )));
            }
            Ok(CorsRule {
                id: r.id,
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers,
                expose_headers,
                max_age_seconds: r.max_age_seconds,
            })
        })
        .collect()
}

fn rules_to(rules: &[CorsRule]) -> CORSRules {
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    rules
        .iter()
        .map(|r| CORSRule {
            id: r.id.clone(),
            allowed_origins: r.allowed_origins.clone(),
            allowed_methods: r.allowed_methods.clone(),
            allowed_headers: non_empty(&r.allowed_headers),
            expose_headers: non_empty(&r.expose_headers),
            max_age_seconds: r.max_age_seconds,
        })
        .collect()
}

/// The first rule that lets `origin` use `method` with every header of
/// `headers` (lowercase), and the origin pattern that matched.
fn matching_rule<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<(&'a CorsRule, &'a str)> {
    rules.iter().find_map(|rule| {
        let pattern = rule
            .allowed_origins
            .iter()
            .find(|o| wildcard_match(o, origin))?;
        let method_ok = rule.allowed_methods.iter().any(|m| m == method);
        let headers_ok = headers.iter().all(|h| {
            rule.allowed_headers
                .iter()
                .any(|a| wildcard_match(&a.to_ascii_lowercase(), h))
        });
        (method_ok && headers_ok).then_some((rule, pattern.as_str()))
    })
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The `Access-Control-*` headers a matched rule grants, as S3 sends them:
/// a rule for any origin answers `*` (and no credentials), others echo it.
fn grant(headers: &mut HeaderMap, rule: &CorsRule, pattern: &str, origin: &str) {
    if pattern == "*" {
        set(headers, header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    } else {
        set(headers, header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        set(headers, header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
    }
    set(
        headers,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        &rule.allowed_methods.join(", "),
    );
    if !rule.expose_headers.is_empty() {
        set(
            headers,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            &rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set(headers, header::ACCESS_CONTROL_MAX_AGE, &age.to_string());
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An S3 XML error answer built here, outside s3s.
fn error_response(status: StatusCode, code: &str, message: &str) -> s3s::HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut response = http::Response::new(s3s::Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

impl Inner {
    /// The bucket's CORS rules, from the cache when fresh.
    async fn cors_rules(&self, bucket: &str) -> S3Result<Rules> {
        if let Some(rules) = self.cors_cache.get(bucket) {
            return Ok(rules);
        }
        let rules = match self.bucket(bucket).await {
            Ok(b) => b.cors.map(Arc::new),
            Err(e) if e.code() == &s3s::S3ErrorCode::NoSuchBucket => None,
            Err(e) => return Err(e),
        };
        self.cors_cache.put(bucket, rules.clone());
        Ok(rules)
    }

    pub(crate) async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let input = req.input;
        let rules = rules_from(input.cors_configuration)?;
        self.update_bucket(&input.bucket, |b| b.cors = Some(rules.clone()))
            .await?;
        Ok(S3Response::new(PutBucketCorsOutput {}))
    }

    pub(crate) async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let rules = bucket.cors.ok_or_else(|| {
            s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            )
        })?;
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(rules_to(&rules)),
        }))
    }

    pub(crate) async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.update_bucket(&req.input.bucket, |b| b.cors = None)
            .await?;
        Ok(S3Response::new(DeleteBucketCorsOutput {}))
    }
}

impl Gateway {
    /// Answers a browser's preflight `OPTIONS` request on `bucket` (or an
    /// object in it). Unauthenticated, as in S3: the bucket's rules decide.
    pub(crate) async fn preflight(&self, bucket: &str, request: &HeaderMap) -> s3s::HttpResponse {
        let bad = |m| error_response(StatusCode::BAD_REQUEST, "BadRequest", m);
        let Some(origin) = header_str(request, header::ORIGIN) else {
            return bad("Insufficient information. Origin request header needed.");
        };
        let Some(method) = header_str(request, header::ACCESS_CONTROL_REQUEST_METHOD) else {
            return bad("Invalid Access-Control-Request-Method: null");
        };
        let asked: Vec<String> = header_str(request, header::ACCESS_CONTROL_REQUEST_HEADERS)
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let forbidden = |m| error_response(StatusCode::FORBIDDEN, "AccessForbidden", m);
        let rules = match self.inner.cors_rules(bucket).await {
            Ok(Some(rules)) => rules,
            Ok(None) => return forbidden("CORSResponse: CORS is not enabled for this bucket."),
            Err(e) => {
                tracing::warn!(bucket, error = %e, "CORS preflight: bucket rules unreadable");
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "the bucket's CORS rules cannot be read now; retry",
                );
            }
        };
        let Some((rule, pattern)) = matching_rule(&rules, origin, method, &asked) else {
            return forbidden(
                "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
            );
        };
        let mut response = http::Response::new(s3s::Body::empty());
        let headers = response.headers_mut();
        grant(headers, rule, pattern, origin);
        if !asked.is_empty() {
            set(
                headers,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                &asked.join(", "),
            );
        }
        headers.insert(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
            ),
        );
        response
    }

    /// Adds the `Access-Control-*` headers to the answer of a normal request
    /// that came with an `Origin`, when a rule of the bucket allows it.
    pub(crate) async fn add_cors_headers(
        &self,
        bucket: &str,
        origin: &str,
        method: &Method,
        response: &mut HeaderMap,
    ) {
        let rules = match self.inner.cors_rules(bucket).await {
            Ok(Some(rules)) => rules,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(bucket, error = %e, "CORS rules unreadable; answering without CORS headers");
                return;
            }
        };
        if let Some((rule, pattern)) = matching_rule(&rules, origin, method.as_str(), &[]) {
            grant(response, rule, pattern, origin);
            response.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        CorsRule {
            allowed_origins: strings(origins),
            allowed_methods: strings(methods),
            allowed_headers: strings(headers),
            ..Default::default()
        }
    }

    #[test]
    fn origins_match_with_one_wildcard() {
        assert!(wildcard_match("*", "https://a.example"));
        assert!(wildcard_match(
            "https://*.example.com",
            "https://app.example.com"
        ));
        assert!(!wildcard_match(
            "https://*.example.com",
            "http://app.example.com"
        ));
        assert!(!wildcard_match("https://a*a", "https://a"));
        assert!(wildcard_match("https://exact", "https://exact"));
    }

    #[test]
    fn first_rule_allowing_origin_method_and_headers_wins() {
        let rules = vec![
            rule(&["https://a.example"], &["GET"], &[]),
            rule(&["*"], &["PUT"], &["x-amz-*", "Content-Type"]),
        ];
        assert!(matching_rule(&rules, "https://a.example", "GET", &[]).is_some());
        assert!(
            matching_rule(&rules, "https://a.example", "GET", &["x-amz-date".into()]).is_none()
        );
        let (r, p) = matching_rule(
            &rules,
            "https://b.example",
            "PUT",
            &["x-amz-date".into(), "content-type".into()],
        )
        .unwrap();
        assert_eq!((r.allowed_methods[0].as_str(), p), ("PUT", "*"));
        assert!(matching_rule(&rules, "https://b.example", "DELETE", &[]).is_none());
    }
}
