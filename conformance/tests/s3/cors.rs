//! Bucket CORS configuration, and CORS for browsers: preflight `OPTIONS`
//! answers and the `Access-Control-*` headers of normal answers.

use std::time::Duration;

use aws_sdk_s3::types::{CorsConfiguration, CorsRule, Tag, Tagging};

use crate::common::*;

/// Every test here finishes well within this, or fails.
const LIMIT: Duration = Duration::from_secs(120);

const APP: &str = "https://app.example.com";

fn rule(origins: &[&str], methods: &[&str]) -> aws_sdk_s3::types::builders::CorsRuleBuilder {
    CorsRule::builder()
        .set_allowed_origins(Some(origins.iter().map(|s| s.to_string()).collect()))
        .set_allowed_methods(Some(methods.iter().map(|s| s.to_string()).collect()))
}

fn config(rules: Vec<CorsRule>) -> CorsConfiguration {
    CorsConfiguration::builder()
        .set_cors_rules(Some(rules))
        .build()
        .expect("cors configuration")
}

/// The app may GET and PUT with its headers; anyone may GET.
fn app_rules() -> CorsConfiguration {
    config(vec![
        rule(&[APP], &["GET", "PUT"])
            .id("app")
            .allowed_headers("x-amz-*")
            .allowed_headers("Content-Type")
            .expose_headers("ETag")
            .max_age_seconds(600)
            .build()
            .unwrap(),
        rule(&["*"], &["GET"]).build().unwrap(),
    ])
}

async fn preflight(c: &TestCluster, path: &str, headers: &[(&str, &str)]) -> Raw {
    raw_request_with_headers(&c.endpoint, "OPTIONS", path, None, headers, b"", None).await
}

fn header<'a>(raw: &'a Raw, name: &str) -> Option<&'a str> {
    raw.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_cors_configuration_round_trips_and_deletes() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("corsconf").await;
        let err = c
            .client
            .get_bucket_cors()
            .bucket("corsconf")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchCORSConfiguration");
        assert_eq!(error_status(&err), 404);

        c.client
            .put_bucket_cors()
            .bucket("corsconf")
            .cors_configuration(app_rules())
            .send()
            .await
            .expect("put bucket cors");
        let out = c
            .client
            .get_bucket_cors()
            .bucket("corsconf")
            .send()
            .await
            .unwrap();
        assert_eq!(out.cors_rules(), app_rules().cors_rules());

        // Another bucket setting does not lose the rules.
        c.client
            .put_bucket_tagging()
            .bucket("corsconf")
            .tagging(
                Tagging::builder()
                    .tag_set(Tag::builder().key("a").value("b").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let out = c
            .client
            .get_bucket_cors()
            .bucket("corsconf")
            .send()
            .await
            .unwrap();
        assert_eq!(out.cors_rules().len(), 2);

        c.client
            .delete_bucket_cors()
            .bucket("corsconf")
            .send()
            .await
            .expect("delete bucket cors");
        let err = c
            .client
            .get_bucket_cors()
            .bucket("corsconf")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchCORSConfiguration");
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cors_configurations_are_refused() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("corsbad").await;
        let put = |cfg: CorsConfiguration| {
            c.client
                .put_bucket_cors()
                .bucket("corsbad")
                .cors_configuration(cfg)
                .send()
        };

        let err = put(config(vec![rule(&[APP], &["PATCH"]).build().unwrap()]))
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidRequest");
        assert_eq!(error_status(&err), 400);
        let err = put(config(vec![
            rule(&["https://*.example.*"], &["GET"]).build().unwrap(),
        ]))
        .await
        .unwrap_err();
        assert_eq!(error_code(&err), "InvalidRequest");
        let many = (0..101)
            .map(|_| rule(&["*"], &["GET"]).build().unwrap())
            .collect();
        let err = put(config(many)).await.unwrap_err();
        assert_eq!(error_code(&err), "MalformedXML");
        let err = put(config(Vec::new())).await.unwrap_err();
        assert_eq!(error_code(&err), "MalformedXML");
        let err = c
            .client
            .get_bucket_cors()
            .bucket("corsbad")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchCORSConfiguration");

        let err = c
            .client
            .put_bucket_cors()
            .bucket("no-such-bucket")
            .cors_configuration(app_rules())
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchBucket");
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_requests_are_answered_from_the_bucket_rules() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("web").await;
        c.create_bucket("closed").await;

        // No configuration: refused.
        let raw = preflight(
            &c,
            "/web/page.html",
            &[("origin", APP), ("access-control-request-method", "GET")],
        )
        .await;
        assert_eq!(raw.status, 403, "{}", raw.body);
        assert!(raw.body.contains("CORSResponse"), "{}", raw.body);

        c.client
            .put_bucket_cors()
            .bucket("web")
            .cors_configuration(app_rules())
            .send()
            .await
            .unwrap();

        // Allowed: origin, method and every requested header match the first rule.
        let raw = preflight(
            &c,
            "/web/uploads/a.bin",
            &[
                ("origin", APP),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "Content-Type, X-Amz-Date"),
            ],
        )
        .await;
        assert_eq!(raw.status, 200, "{}", raw.body);
        assert_eq!(header(&raw, "access-control-allow-origin"), Some(APP));
        assert_eq!(
            header(&raw, "access-control-allow-methods"),
            Some("GET, PUT")
        );
        assert_eq!(
            header(&raw, "access-control-allow-headers"),
            Some("content-type, x-amz-date")
        );
        assert_eq!(header(&raw, "access-control-max-age"), Some("600"));
        assert_eq!(header(&raw, "access-control-expose-headers"), Some("ETag"));
        assert!(header(&raw, "vary").is_some_and(|v| v.contains("Origin")));

        // Any origin may GET (second rule): answered with `*`.
        let raw = preflight(
            &c,
            "/web/page.html",
            &[
                ("origin", "https://other.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
        assert_eq!(raw.status, 200, "{}", raw.body);
        assert_eq!(header(&raw, "access-control-allow-origin"), Some("*"));

        // Not allowed: wrong origin for PUT, a method no rule has, a header no rule has.
        for headers in [
            vec![
                ("origin", "https://evil.example"),
                ("access-control-request-method", "PUT"),
            ],
            vec![("origin", APP), ("access-control-request-method", "DELETE")],
            vec![
                ("origin", APP),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "authorization-extra"),
            ],
        ] {
            let raw = preflight(&c, "/web/uploads/a.bin", &headers).await;
            assert_eq!(raw.status, 403, "{headers:?}: {}", raw.body);
            assert!(
                raw.body
                    .contains("CORSResponse: This CORS request is not allowed"),
                "{}",
                raw.body
            );
            assert!(header(&raw, "access-control-allow-origin").is_none());
        }

        // Without Origin the request is incomplete.
        let raw = preflight(&c, "/web/x", &[("access-control-request-method", "GET")]).await;
        assert_eq!(raw.status, 400, "{}", raw.body);

        // Another bucket's rules do not apply.
        let raw = preflight(
            &c,
            "/closed/x",
            &[("origin", APP), ("access-control-request-method", "GET")],
        )
        .await;
        assert_eq!(raw.status, 403, "{}", raw.body);

        // Deleting the configuration takes effect at once on this gateway.
        c.client
            .delete_bucket_cors()
            .bucket("web")
            .send()
            .await
            .unwrap();
        let raw = preflight(
            &c,
            "/web/page.html",
            &[("origin", APP), ("access-control-request-method", "GET")],
        )
        .await;
        assert_eq!(raw.status, 403, "{}", raw.body);
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_allowed_origins_carry_cors_headers() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("site").await;
        c.put("site", "index.html", b"<html></html>".to_vec()).await;
        c.client
            .put_bucket_cors()
            .bucket("site")
            .cors_configuration(config(vec![
                rule(&[APP], &["GET", "HEAD"])
                    .expose_headers("ETag")
                    .expose_headers("x-amz-request-id")
                    .build()
                    .unwrap(),
            ]))
            .send()
            .await
            .unwrap();
        let creds = Some((ACCESS_KEY, SECRET_KEY));

        let raw = raw_request_with_headers(
            &c.endpoint,
            "GET",
            "/site/index.html",
            None,
            &[("origin", APP)],
            b"",
            creds,
        )
        .await;
        assert_eq!(raw.status, 200, "{}", raw.body);
        assert_eq!(raw.body, "<html></html>");
        assert_eq!(header(&raw, "access-control-allow-origin"), Some(APP));
        assert_eq!(
            header(&raw, "access-control-expose-headers"),
            Some("ETag, x-amz-request-id")
        );
        assert!(header(&raw, "vary").is_some_and(|v| v.contains("Origin")));

        // An origin no rule allows, or a method the rule does not list: no CORS headers.
        let raw = raw_request_with_headers(
            &c.endpoint,
            "GET",
            "/site/index.html",
            None,
            &[("origin", "https://evil.example")],
            b"",
            creds,
        )
        .await;
        assert_eq!(raw.status, 200, "{}", raw.body);
        assert!(header(&raw, "access-control-allow-origin").is_none());
        let raw = raw_request_with_headers(
            &c.endpoint,
            "DELETE",
            "/site/index.html",
            None,
            &[("origin", APP)],
            b"",
            creds,
        )
        .await;
        assert_eq!(raw.status, 204, "{}", raw.body);
        assert!(header(&raw, "access-control-allow-origin").is_none());
        c.stop().await;
    })
    .await;
}
