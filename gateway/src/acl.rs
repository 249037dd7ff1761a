//! S3 access control lists (ACLs), as AWS documents them: the canned ACLs
//! and `x-amz-grant-*` headers that set a bucket's or an object's grants,
//! and what a grant lets a requester do. Pure logic; the S3 handlers
//! (Get/Put Bucket/Object ACL, resolving grantees against the key store)
//! are in `s3::acl`, the access check that applies grants in `s3::access`.

use s3s::{S3Result, s3_error};

pub use crate::store::model::{AclGrant, AclGrantee, AclPermission};

/// The URIs S3 names its groups by.
pub const ALL_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
pub const AUTHENTICATED_USERS_URI: &str =
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
pub const LOG_DELIVERY_URI: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// Grant headers and the permission each gives, in the order grants are
/// stored (and shown) when a request carries several.
pub const GRANT_HEADERS: [(&str, AclPermission); 5] = [
    ("x-amz-grant-read", AclPermission::Read),
    ("x-amz-grant-write", AclPermission::Write),
    ("x-amz-grant-read-acp", AclPermission::ReadAcp),
    ("x-amz-grant-write-acp", AclPermission::WriteAcp),
    ("x-amz-grant-full-control", AclPermission::FullControl),
];

/// Who sends a request, as ACL grantees see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requester<'a> {
    /// No signature.
    Anonymous,
    /// Signed with this access key (valid; the root key included).
    Key(&'a str),
}

impl AclGrantee {
    /// Whether this grantee covers the requester.
    pub fn covers(&self, who: Requester<'_>) -> bool {
        match (self, who) {
            (AclGrantee::AllUsers, _) => true,
            (AclGrantee::AuthenticatedUsers, Requester::Key(_)) => true,
            (AclGrantee::Key(grantee), Requester::Key(key)) => grantee == key,
            _ => false,
        }
    }

    /// The group URI of a group grantee.
    pub fn uri(&self) -> Option<&'static str> {
        match self {
            AclGrantee::Key(_) => None,
            AclGrantee::AllUsers => Some(ALL_USERS_URI),
            AclGrantee::AuthenticatedUsers => Some(AUTHENTICATED_USERS_URI),
            AclGrantee::LogDelivery => Some(LOG_DELIVERY_URI),
        }
    }

    /// The group a URI names; None for a URI S3 does not know.
    pub fn from_uri(uri: &str) -> Option<AclGrantee> {
        match uri {
            ALL_USERS_URI => Some(AclGrantee::AllUsers),
            AUTHENTICATED_USERS_URI => Some(AclGrantee::AuthenticatedUsers),
            LOG_DELIVERY_URI => Some(AclGrantee::LogDelivery),
            _ => None,
        }
    }
}

impl AclPermission {
    /// The S3 name (`READ`, `WRITE`, `READ_ACP`, `WRITE_ACP`, `FULL_CONTROL`).
    pub fn as_str(self) -> &'static str {
        match self {
            AclPermission::Read => "READ",
            AclPermission::Write => "WRITE",
            AclPermission::ReadAcp => "READ_ACP",
            AclPermission::WriteAcp => "WRITE_ACP",
            AclPermission::FullControl => "FULL_CONTROL",
        }
    }

    pub fn parse(name: &str) -> Option<AclPermission> {
        [
            AclPermission::Read,
            AclPermission::Write,
            AclPermission::ReadAcp,
            AclPermission::WriteAcp,
            AclPermission::FullControl,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }

    /// Whether a grant of `self` gives `needed` (FULL_CONTROL gives all).
    pub fn gives(self, needed: AclPermission) -> bool {
        self == AclPermission::FullControl || self == needed
    }
}

/// Whether any of the grants gives the requester the permission.
pub fn allows(grants: &[AclGrant], who: Requester<'_>, needed: AclPermission) -> bool {
    grants
        .iter()
        .any(|g| g.permission.gives(needed) && g.grantee.covers(who))
}

/// Whether the grants let everyone read (what the old `public_read` flag
/// of records says).
pub fn is_public_read(grants: &[AclGrant]) -> bool {
    allows(grants, Requester::Anonymous, AclPermission::Read)
}

/// The canonical user id S3 shows for a key: its access key in hex, so it
/// names the key without a lookup and maps back to it.
pub fn canonical_id(access_key: &str) -> String {
    hex::encode(access_key.as_bytes())
}

/// The access key a canonical user id names (not checked to exist).
pub fn access_key_of(id: &str) -> Option<String> {
    hex::decode(id)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|key| !key.is_empty())
}

/// A canned ACL (`x-amz-acl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canned {
    Private,
    PublicRead,
    PublicReadWrite,
    AuthenticatedRead,
    /// The EC2 read grant AWS adds has no meaning here: private.
    AwsExecRead,
    BucketOwnerRead,
    BucketOwnerFullControl,
    /// Buckets only.
    LogDeliveryWrite,
}

/// What a resource an ACL is set on is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Bucket,
    Object,
}

impl Canned {
    pub fn parse(name: &str, resource: Resource) -> S3Result<Canned> {
        let canned = match name {
            "private" => Canned::Private,
            "public-read" => Canned::PublicRead,
            "public-read-write" => Canned::PublicReadWrite,
            "authenticated-read" => Canned::AuthenticatedRead,
            "aws-exec-read" => Canned::AwsExecRead,
            "bucket-owner-read" => Canned::BucketOwnerRead,
            "bucket-owner-full-control" => Canned::BucketOwnerFullControl,
            "log-delivery-write" if resource == Resource::Bucket => Canned::LogDeliveryWrite,
            _ => {
                return Err(s3_error!(
                    InvalidArgument,
                    "unknown canned ACL {name:?}: use private, public-read, public-read-write, \
                     authenticated-read, aws-exec-read, bucket-owner-read, \
                     bucket-owner-full-control{}",
                    if resource == Resource::Bucket {
                        " or log-delivery-write"
                    } else {
                        ""
                    }
                ));
            }
        };
        Ok(canned)
    }

    /// The grants of this canned ACL on a resource owned by `owner` in a
    /// bucket owned by `bucket_owner` (the same key for a bucket).
    pub fn grants(self, owner: &str, bucket_owner: &str) -> Vec<AclGrant> {
        let grant = |grantee, permission| AclGrant {
            grantee,
            permission,
        };
        let mut grants = vec![grant(
            AclGrantee::Key(owner.to_string()),
            AclPermission::FullControl,
        )];
        let bucket_owner_gets = |permission| {
            (owner != bucket_owner)
                .then(|| grant(AclGrantee::Key(bucket_owner.to_string()), permission))
        };
        match self {
            Canned::Private | Canned::AwsExecRead => {}
            Canned::PublicRead => grants.push(grant(AclGrantee::AllUsers, AclPermission::Read)),
            Canned::PublicReadWrite => {
                grants.push(grant(AclGrantee::AllUsers, AclPermission::Read));
                grants.push(grant(AclGrantee::AllUsers, AclPermission::Write));
            }
            Canned::AuthenticatedRead => {
                grants.push(grant(AclGrantee::AuthenticatedUsers, AclPermission::Read));
            }
            Canned::BucketOwnerRead => grants.extend(bucket_owner_gets(AclPermission::Read)),
            Canned::BucketOwnerFullControl => {
                grants.extend(bucket_owner_gets(AclPermission::FullControl));
            }
            Canned::LogDeliveryWrite => {
                grants.push(grant(AclGrantee::LogDelivery, AclPermission::Write));
                grants.push(grant(AclGrantee::LogDelivery, AclPermission::ReadAcp));
            }
        }
        grants
    }
}

/// A grantee as a request names it, before it is checked against the keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamedGrantee {
    Id(String),
    Uri(String),
    Email(String),
}

/// The ACL a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    Canned(Canned),
    Grants(Vec<(NamedGrantee, AclPermission)>),
}

/// The ACL a request's `x-amz-acl` (`canned`, from the input, which also
/// covers a POST form's field) and `x-amz-grant-*` headers ask for; None
/// when it names none. Both at once is InvalidRequest, as in S3.
pub fn requested(
    canned: Option<&str>,
    headers: &http::HeaderMap,
    resource: Resource,
) -> S3Result<Option<Requested>> {
    let mut grants = Vec::new();
    for (header, permission) in GRANT_HEADERS {
        for value in headers.get_all(header) {
            let value = value
                .to_str()
                .map_err(|_| s3_error!(InvalidArgument, "{header} is not ASCII"))?;
            for grantee in parse_grantees(header, value)? {
                grants.push((grantee, permission));
            }
        }
    }
    match canned {
        Some(_) if !grants.is_empty() => Err(s3_error!(
            InvalidRequest,
            "Specifying both Canned ACLs and Header Grants is not allowed"
        )),
        Some(name) => Ok(Some(Requested::Canned(Canned::parse(name, resource)?))),
        None if grants.is_empty() => Ok(None),
        None => Ok(Some(Requested::Grants(grants))),
    }
}

/// The grantees of one `x-amz-grant-*` header:
/// `id="..."`, `uri="..."` or `emailAddress="..."`, comma separated,
/// quotes optional.
fn parse_grantees(header: &str, value: &str) -> S3Result<Vec<NamedGrantee>> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "{header}: expected id=\"...\", uri=\"...\" or emailAddress=\"...\", comma separated"
        )
    };
    let mut grantees = Vec::new();
    for item in split_outside_quotes(value) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (kind, name) = item.split_once('=').ok_or_else(bad)?;
        let name = name.trim();
        let name = name
            .strip_prefix('"')
            .and_then(|n| n.strip_suffix('"'))
            .unwrap_or(name)
            .to_string();
        if name.is_empty() {
            return Err(bad());
        }
        grantees.push(match kind.trim().to_ascii_lowercase().as_str() {
            "id" => NamedGrantee::Id(name),
            "uri" => NamedGrantee::Uri(name),
            "emailaddress" => NamedGrantee::Email(name),
            _ => return Err(bad()),
        });
    }
    if grantees.is_empty() {
        return Err(bad());
    }
    Ok(grantees)
}

fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// Grants for display: the others in their stored order, then the owner's
/// FULL_CONTROL (the order S3 answers canned ACLs in, which clients such as
/// the Ceph suite compare against).
pub fn for_display(grants: &[AclGrant], owner: &str) -> Vec<AclGrant> {
    let is_owner_fc = |g: &&AclGrant| {
        g.permission == AclPermission::FullControl
            && matches!(&g.grantee, AclGrantee::Key(k) if k == owner)
    };
    let mut sorted: Vec<AclGrant> = grants.iter().filter(|g| !is_owner_fc(g)).cloned().collect();
    sorted.extend(grants.iter().filter(is_owner_fc).cloned());
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn canned_acls_expand_to_the_grants_aws_documents() {
        let g = Canned::PublicReadWrite.grants("me", "me");
        assert_eq!(g.len(), 3);
        assert!(allows(&g, Requester::Anonymous, AclPermission::Write));
        let g = Canned::AuthenticatedRead.grants("me", "me");
        assert!(!allows(&g, Requester::Anonymous, AclPermission::Read));
        assert!(allows(&g, Requester::Key("other"), AclPermission::Read));
        assert!(!allows(&g, Requester::Key("other"), AclPermission::ReadAcp));
        let g = Canned::BucketOwnerRead.grants("writer", "owner");
        assert!(allows(&g, Requester::Key("owner"), AclPermission::Read));
        assert!(!allows(
            &g,
            Requester::Key("owner"),
            AclPermission::WriteAcp
        ));
        assert_eq!(Canned::BucketOwnerFullControl.grants("me", "me").len(), 1);
        let g = Canned::BucketOwnerFullControl.grants("writer", "owner");
        assert!(allows(&g, Requester::Key("owner"), AclPermission::WriteAcp));
        assert!(is_public_read(&Canned::PublicRead.grants("a", "a")));
        assert!(!is_public_read(&Canned::Private.grants("a", "a")));
    }

    #[test]
    fn unknown_canned_acls_and_log_delivery_on_objects_are_invalid() {
        assert!(Canned::parse("log-delivery-write", Resource::Bucket).is_ok());
        for (name, resource) in [
            ("log-delivery-write", Resource::Object),
            ("public", Resource::Bucket),
            ("", Resource::Object),
        ] {
            let e = Canned::parse(name, resource).unwrap_err();
            assert_eq!(e.code(), &s3s::S3ErrorCode::InvalidArgument, "{name}");
        }
    }

    #[test]
    fn grant_headers_parse_into_named_grantees_in_header_order() {
        let h = headers(&[
            ("x-amz-grant-full-control", "id=abc"),
            (
                "x-amz-grant-read",
                &format!("uri=\"{ALL_USERS_URI}\", emailAddress=\"a@b.c\""),
            ),
        ]);
        let Some(Requested::Grants(g)) = requested(None, &h, Resource::Object).unwrap() else {
            panic!("grants expected");
        };
        assert_eq!(
            g,
            [
                (NamedGrantee::Uri(ALL_USERS_URI.into()), AclPermission::Read),
                (NamedGrantee::Email("a@b.c".into()), AclPermission::Read),
                (NamedGrantee::Id("abc".into()), AclPermission::FullControl),
            ]
        );
        assert_eq!(
            requested(None, &headers(&[]), Resource::Bucket).unwrap(),
            None
        );
        let e = requested(Some("private"), &h, Resource::Object).unwrap_err();
        assert_eq!(e.code(), &s3s::S3ErrorCode::InvalidRequest);
        for bad in ["", "id", "nick=\"x\"", "id=\"\""] {
            let h = headers(&[("x-amz-grant-read", bad)]);
            assert!(requested(None, &h, Resource::Object).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn canonical_ids_map_back_to_their_access_key() {
        let id = canonical_id("FK0123");
        assert_eq!(access_key_of(&id).as_deref(), Some("FK0123"));
        assert_eq!(access_key_of("not hex"), None);
        assert_eq!(access_key_of(""), None);
    }

    #[test]
    fn the_owner_full_control_grant_is_shown_last() {
        let g = Canned::PublicRead.grants("me", "me");
        let shown = for_display(&g, "me");
        assert_eq!(shown[0].grantee, AclGrantee::AllUsers);
        assert_eq!(shown[1].grantee, AclGrantee::Key("me".into()));
    }
}
