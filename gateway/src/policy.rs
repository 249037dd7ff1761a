//! The bucket policy language, as AWS documents it for S3: parsing and
//! validating a policy document, and evaluating it for one request. Pure:
//! no I/O, no s3s types; the S3 side (`s3::policy`) gathers the request's
//! facts into a [`Request`] and applies the [`Decision`].
//!
//! ```
//! use gateway::policy::{Context, Decision, Policy, Principal, Request};
//! let policy = Policy::parse(r#"{"Version": "2012-10-17", "Statement": {
//!     "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
//!     "Resource": "arn:aws:s3:::photos/*"}}"#, "photos").unwrap();
//! let request = Request {
//!     principal: Principal::Anonymous,
//!     action: "s3:GetObject",
//!     resource: "arn:aws:s3:::photos/cat.jpg",
//!     context: &Context::default(),
//! };
//! assert_eq!(policy.evaluate(&request), Decision::Allow);
//! assert!(policy.is_public());
//! ```

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use serde_json::Value;

/// AWS's limit on the size of a bucket policy document.
pub const MAX_POLICY_BYTES: usize = 20 * 1024;

/// How every S3 resource ARN starts.
pub const S3_ARN_PREFIX: &str = "arn:aws:s3:::";

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("Policies must be less than {MAX_POLICY_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Malformed(String),
}

fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(msg.into())
}

/// Who makes a request, as a policy's `Principal` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal<'a> {
    /// No signature: only `"*"` matches.
    Anonymous,
    /// A signed request: the access key, its name, and its canonical
    /// (owner) id as ListBuckets shows it.
    Key {
        access_key: &'a str,
        name: &'a str,
        canonical_id: &'a str,
    },
}

/// Condition keys and their values for one request. Keys are normalised
/// with [`normalize_key`]; a key that is absent is not in the map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context(BTreeMap<String, Vec<String>>);

impl Context {
    /// Sets a key (any case) to one value.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(normalize_key(key), vec![value.into()]);
    }

    /// Sets a key (any case) to several values (multi-valued keys).
    pub fn set_all(&mut self, key: &str, values: Vec<String>) {
        self.0.insert(normalize_key(key), values);
    }

    fn get(&self, normalized: &str) -> Option<&[String]> {
        self.0
            .get(normalized)
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }
}

/// One request to decide on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: Principal<'a>,
    /// The action, e.g. `s3:GetObject`.
    pub action: &'a str,
    /// `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`.
    pub resource: &'a str,
    pub context: &'a Context,
}

/// What a policy says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A matching Deny statement: refused, whatever else allows it.
    Deny,
    /// A matching Allow statement and no matching Deny.
    Allow,
    /// No statement matches: the other rules decide.
    NotApplicable,
}

/// Condition keys are case-insensitive, except the tag key after
/// `.../ExistingObjectTag/` and the like.
pub fn normalize_key(key: &str) -> String {
    match key.split_once('/') {
        Some((head, tail)) => format!("{}/{tail}", head.to_ascii_lowercase()),
        None => key.to_ascii_lowercase(),
    }
}

/// A parsed, valid bucket policy.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    /// Principal (negated: NotPrincipal).
    principals: Principals,
    principal_negated: bool,
    /// Lowercase patterns (negated: NotAction).
    actions: Vec<String>,
    action_negated: bool,
    /// ARN patterns (negated: NotResource).
    resources: Vec<String>,
    resource_negated: bool,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default)]
struct Principals {
    /// `"*"` or `{"AWS": "*"}`: everyone, anonymous included.
    everyone: bool,
    /// AWS and CanonicalUser names, as written.
    names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Null,
}

const OPS: &[(&str, Op)] = &[
    ("StringEquals", Op::StringEquals),
    ("StringNotEquals", Op::StringNotEquals),
    ("StringEqualsIgnoreCase", Op::StringEqualsIgnoreCase),
    ("StringNotEqualsIgnoreCase", Op::StringNotEqualsIgnoreCase),
    ("StringLike", Op::StringLike),
    ("StringNotLike", Op::StringNotLike),
    ("NumericEquals", Op::NumericEquals),
    ("NumericNotEquals", Op::NumericNotEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("DateEquals", Op::DateEquals),
    ("DateNotEquals", Op::DateNotEquals),
    ("DateLessThan", Op::DateLessThan),
    ("DateLessThanEquals", Op::DateLessThanEquals),
    ("DateGreaterThan", Op::DateGreaterThan),
    ("DateGreaterThanEquals", Op::DateGreaterThanEquals),
    ("Bool", Op::Bool),
    ("BinaryEquals", Op::BinaryEquals),
    ("IpAddress", Op::IpAddress),
    ("NotIpAddress", Op::NotIpAddress),
    ("ArnEquals", Op::ArnEquals),
    ("ArnNotEquals", Op::ArnNotEquals),
    ("ArnLike", Op::ArnLike),
    ("ArnNotLike", Op::ArnNotLike),
    ("Null", Op::Null),
];

impl Op {
    /// Operators that hold when the value matches none of the policy's.
    fn negated(self) -> bool {
        matches!(
            self,
            Op::StringNotEquals
                | Op::StringNotEqualsIgnoreCase
                | Op::StringNotLike
                | Op::NumericNotEquals
                | Op::DateNotEquals
                | Op::NotIpAddress
                | Op::ArnNotEquals
                | Op::ArnNotLike
        )
    }
}

#[derive(Debug, Clone)]
struct Condition {
    op: Op,
    qualifier: Qualifier,
    if_exists: bool,
    /// Normalised (see [`normalize_key`]).
    key: String,
    values: Vec<String>,
}

/// Condition keys that, with a fixed value, keep a statement for `*` from
/// being public (AWS, "The meaning of public").
const NON_PUBLIC_KEYS: &[&str] = &[
    "aws:sourceip",
    "aws:sourcearn",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceowner",
    "aws:sourceaccount",
    "aws:principalorgid",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:userid",
    "aws:username",
    "s3:dataaccesspointarn",
    "s3:dataaccesspointaccount",
];

impl Policy {
    /// Parses and validates a policy for `bucket`: every Resource must name
    /// this bucket or objects in it.
    pub fn parse(text: &str, bucket: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge);
        }
        let doc: Value = serde_json::from_str(text)
            .map_err(|_| malformed("Policies must be valid JSON and the first byte must be '{'"))?;
        let Value::Object(doc) = doc else {
            return Err(malformed(
                "Policies must be valid JSON and the first byte must be '{'",
            ));
        };
        for (field, value) in &doc {
            match field.as_str() {
                "Version" => match value.as_str() {
                    Some("2012-10-17" | "2008-10-17") => {}
                    _ => return Err(malformed("The policy must contain a valid version string")),
                },
                "Id" | "Statement" => {}
                other => return Err(malformed(format!("Unknown field {other}"))),
            }
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) if !list.is_empty() => list.iter().collect::<Vec<_>>(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => return Err(malformed("Missing required field Statement")),
        };
        let mut sids = HashSet::new();
        let statements = statements
            .into_iter()
            .map(|s| parse_statement(s, bucket, &mut sids))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { statements })
    }

    /// Explicit Deny wins over Allow; with neither, NotApplicable.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let mut allowed = false;
        for s in self.statements.iter().filter(|s| s.applies(req)) {
            match s.effect {
                Effect::Deny => return Decision::Deny,
                Effect::Allow => allowed = true,
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NotApplicable
        }
    }

    /// Whether an Allow statement grants to everyone (`*`) without a
    /// condition that pins the caller down (source IP, user id, ...).
    pub fn is_public(&self) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && !s.principal_negated
                && s.principals.everyone
                && !s.conditions.iter().any(Condition::limits_callers)
        })
    }

    /// Whether some condition reads a key starting with `prefix` (any case),
    /// e.g. `s3:ExistingObjectTag/`: such facts are read only when needed.
    pub fn uses_key(&self, prefix: &str) -> bool {
        let prefix = prefix.to_ascii_lowercase();
        self.statements
            .iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.key.starts_with(&prefix))
    }
}

fn strings(value: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(malformed(format!("Invalid value in {what}"))),
    };
    match value {
        Value::Array(list) if !list.is_empty() => list.iter().map(one).collect(),
        Value::Array(_) => Err(malformed(format!("{what} must not be empty"))),
        v => Ok(vec![one(v)?]),
    }
}

fn parse_statement(
    s: &Value,
    bucket: &str,
    sids: &mut HashSet<String>,
) -> Result<Statement, PolicyError> {
    let Value::Object(s) = s else {
        return Err(malformed("Invalid policy syntax."));
    };
    for field in s.keys() {
        if !matches!(
            field.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(malformed(format!("Unknown field {field}")));
        }
    }
    if let Some(sid) = s.get("Sid") {
        let sid = sid
            .as_str()
            .ok_or_else(|| malformed("Sid must be a string"))?;
        if !sid.is_empty() && !sids.insert(sid.to_string()) {
            return Err(malformed(format!(
                "Statement IDs (SID) in a single policy must be unique: {sid}"
            )));
        }
    }
    let effect = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(other) => return Err(malformed(format!("Invalid effect: {other}"))),
        None => return Err(malformed("Missing required field Effect")),
    };
    let (principals, principal_negated) = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(p), None) => (parse_principal(p)?, false),
        (None, Some(_)) if effect == Effect::Allow => {
            return Err(malformed(
                "NotPrincipal is not supported with Effect Allow; name the principals to allow",
            ));
        }
        (None, Some(p)) => (parse_principal(p)?, true),
        (None, None) => return Err(malformed("Missing required field Principal")),
        (Some(_), Some(_)) => {
            return Err(malformed(
                "A statement has Principal or NotPrincipal, not both",
            ));
        }
    };
    let (actions, action_negated) = match (s.get("Action"), s.get("NotAction")) {
        (Some(a), None) => (strings(a, "Action")?, false),
        (None, Some(a)) => (strings(a, "NotAction")?, true),
        (None, None) => return Err(malformed("Missing required field Action")),
        (Some(_), Some(_)) => {
            return Err(malformed("A statement has Action or NotAction, not both"));
        }
    };
    for action in &actions {
        let valid = action == "*"
            || action
                .get(..3)
                .is_some_and(|p| p.eq_ignore_ascii_case("s3:"))
                && action.len() > 3
                && action[3..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?');
        if !valid {
            return Err(malformed("Policy has invalid action"));
        }
    }
    let actions = actions.iter().map(|a| a.to_ascii_lowercase()).collect();
    let (resources, resource_negated) = match (s.get("Resource"), s.get("NotResource")) {
        (Some(r), None) => (strings(r, "Resource")?, false),
        (None, Some(r)) => (strings(r, "NotResource")?, true),
        (None, None) => return Err(malformed("Missing required field Resource")),
        (Some(_), Some(_)) => {
            return Err(malformed(
                "A statement has Resource or NotResource, not both",
            ));
        }
    };
    for resource in &resources {
        let in_bucket = resource.strip_prefix(S3_ARN_PREFIX).is_some_and(|rest| {
            let bucket_pattern = rest.split('/').next().unwrap_or_default();
            wildcard_match(bucket_pattern, bucket)
        });
        if !in_bucket {
            return Err(malformed("Policy has invalid resource"));
        }
    }
    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(c)?,
    };
    Ok(Statement {
        effect,
        principals,
        principal_negated,
        actions,
        action_negated,
        resources,
        resource_negated,
        conditions,
    })
}

fn parse_principal(p: &Value) -> Result<Principals, PolicyError> {
    let invalid = || malformed("Invalid principal in policy");
    match p {
        Value::String(s) if s == "*" => Ok(Principals {
            everyone: true,
            names: Vec::new(),
        }),
        Value::Object(map) if !map.is_empty() => {
            let mut principals = Principals::default();
            for (kind, value) in map {
                let values = strings(value, "Principal").map_err(|_| invalid())?;
                match kind.as_str() {
                    "AWS" => {
                        for v in values {
                            if v == "*" {
                                principals.everyone = true;
                            } else if v.is_empty() {
                                return Err(invalid());
                            } else {
                                principals.names.push(v);
                            }
                        }
                    }
                    "CanonicalUser" => principals.names.extend(values),
                    // Accepted for compatibility; no Flexdrive request comes
                    // from an AWS service or a federated identity.
                    "Service" | "Federated" => {}
                    _ => return Err(invalid()),
                }
            }
            Ok(principals)
        }
        _ => Err(invalid()),
    }
}

fn parse_conditions(c: &Value) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(blocks) = c else {
        return Err(malformed("Invalid Condition block"));
    };
    let mut conditions = Vec::new();
    for (name, keys) in blocks {
        let (qualifier, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (Qualifier::ForAnyValue, rest)
        } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (Qualifier::ForAllValues, rest)
        } else {
            (Qualifier::Single, name.as_str())
        };
        let (if_exists, base) = match rest.strip_suffix("IfExists") {
            Some(base) => (true, base),
            None => (false, rest),
        };
        let op = OPS
            .iter()
            .find(|(n, _)| *n == base)
            .map(|(_, op)| *op)
            .filter(|op| !(if_exists && *op == Op::Null))
            .ok_or_else(|| malformed(format!("Invalid Condition type : {name}")))?;
        let Value::Object(keys) = keys else {
            return Err(malformed(format!("Invalid Condition block for {name}")));
        };
        for (key, values) in keys {
            let values = strings(values, "Condition")?;
            for v in &values {
                check_condition_value(op, v).map_err(|why| {
                    malformed(format!("Invalid value {v} for {name} {key}: {why}"))
                })?;
            }
            conditions.push(Condition {
                op,
                qualifier,
                if_exists,
                key: normalize_key(key),
                values,
            });
        }
    }
    Ok(conditions)
}

fn check_condition_value(op: Op, v: &str) -> Result<(), &'static str> {
    use Op::*;
    match op {
        NumericEquals
        | NumericNotEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => v.parse::<f64>().map(|_| ()).map_err(|_| "not a number"),
        DateEquals
        | DateNotEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => parse_date(v).map(|_| ()).ok_or("not a date"),
        Bool | Null => match v.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => Err("not true or false"),
        },
        IpAddress | NotIpAddress => parse_cidr(v).map(|_| ()).ok_or("not an IP address or CIDR"),
        _ => Ok(()),
    }
}

impl Statement {
    fn applies(&self, req: &Request<'_>) -> bool {
        let principal = self.principals.matches(req.principal) != self.principal_negated;
        let action = self
            .actions
            .iter()
            .any(|a| wildcard_match(a, &req.action.to_ascii_lowercase()))
            != self.action_negated;
        let resource = self
            .resources
            .iter()
            .any(|r| wildcard_match(r, req.resource))
            != self.resource_negated;
        principal && action && resource && self.conditions.iter().all(|c| c.holds(req.context))
    }
}

impl Principals {
    fn matches(&self, who: Principal<'_>) -> bool {
        if self.everyone {
            return true;
        }
        let Principal::Key {
            access_key,
            name,
            canonical_id,
        } = who
        else {
            return false;
        };
        self.names.iter().any(|n| {
            if n == canonical_id || n == access_key {
                return true;
            }
            // arn:aws:iam::<account>:user/<path/>name and arn:aws:iam::<account>:root
            let Some(rest) = n.strip_prefix("arn:aws:iam::") else {
                return false;
            };
            let Some((account, what)) = rest.split_once(':') else {
                return false;
            };
            if what == "root" {
                return account == access_key || account == canonical_id;
            }
            what.strip_prefix("user/")
                .and_then(|path| path.rsplit('/').next())
                .is_some_and(|user| user == name || user == access_key)
        })
    }
}

impl Condition {
    fn holds(&self, context: &Context) -> bool {
        let present = context.get(&self.key);
        if self.op == Op::Null {
            let want_absent = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            return present.is_none() == want_absent;
        }
        let Some(request_values) = present else {
            return match self.qualifier {
                Qualifier::ForAllValues => true,
                Qualifier::ForAnyValue => false,
                Qualifier::Single => self.if_exists || self.op.negated(),
            };
        };
        let one = |value: &String| {
            let any = self.values.iter().any(|p| compare(self.op, value, p));
            any != self.op.negated()
        };
        match self.qualifier {
            Qualifier::ForAllValues => request_values.iter().all(one),
            Qualifier::ForAnyValue | Qualifier::Single => request_values.iter().any(one),
        }
    }

    /// A condition that keeps a `*` statement from being public: a fixed
    /// value (no wildcard) for a key that identifies the caller.
    fn limits_callers(&self) -> bool {
        if !NON_PUBLIC_KEYS.contains(&self.key.as_str()) || self.op.negated() {
            return false;
        }
        match self.op {
            Op::IpAddress => self
                .values
                .iter()
                .all(|v| parse_cidr(v).is_some_and(|(_, bits)| bits > 0)),
            Op::StringEquals
            | Op::StringEqualsIgnoreCase
            | Op::ArnEquals
            | Op::StringLike
            | Op::ArnLike => self.values.iter().all(|v| !v.contains(['*', '?'])),
            _ => false,
        }
    }
}

/// Whether `value` matches the policy value `pattern` under the positive
/// form of `op` (negation is applied by the caller).
fn compare(op: Op, value: &str, pattern: &str) -> bool {
    use Op::*;
    match op {
        StringEquals | StringNotEquals | ArnEquals | ArnNotEquals | BinaryEquals => {
            value == pattern
        }
        StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => value.eq_ignore_ascii_case(pattern),
        StringLike | StringNotLike | ArnLike | ArnNotLike => wildcard_match(pattern, value),
        NumericEquals
        | NumericNotEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => {
            let (Ok(v), Ok(p)) = (value.parse::<f64>(), pattern.parse::<f64>()) else {
                return false;
            };
            match op {
                NumericLessThan => v < p,
                NumericLessThanEquals => v <= p,
                NumericGreaterThan => v > p,
                NumericGreaterThanEquals => v >= p,
                _ => v == p,
            }
        }
        DateEquals
        | DateNotEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => {
            let (Some(v), Some(p)) = (parse_date(value), parse_date(pattern)) else {
                return false;
            };
            match op {
                DateLessThan => v < p,
                DateLessThanEquals => v <= p,
                DateGreaterThan => v > p,
                DateGreaterThanEquals => v >= p,
                _ => v == p,
            }
        }
        Bool => value.eq_ignore_ascii_case(pattern),
        IpAddress | NotIpAddress => {
            let (Ok(ip), Some((net, bits))) = (value.parse::<IpAddr>(), parse_cidr(pattern)) else {
                return false;
            };
            in_network(ip, net, bits)
        }
        Null => false,
    }
}

/// Seconds since the epoch of an ISO 8601 date or date-time, or of a
/// number of seconds since the epoch.
fn parse_date(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let mut parts = s.splitn(3, '-').map(str::parse::<i32>);
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let date = time::Date::from_calendar_date(y, month, u8::try_from(d).ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

/// An address and prefix length (`10.0.0.0/8`; a bare address is /32 or /128).
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((addr, bits))
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        (IpAddr::V6(a), IpAddr::V4(b)) => match a.to_ipv4_mapped() {
            Some(a) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
            None => return false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    (ip >> shift) == (net >> shift)
}

/// `*` matches any run of characters (also none), `?` any one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it last matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "photos";

    fn policy(statement: &str) -> Policy {
        Policy::parse(
            &format!(r#"{{"Version": "2012-10-17", "Statement": [{statement}]}}"#),
            B,
        )
        .unwrap()
    }

    fn refused(statement: &str) -> String {
        match Policy::parse(
            &format!(r#"{{"Version": "2012-10-17", "Statement": [{statement}]}}"#),
            B,
        ) {
            Err(PolicyError::Malformed(why)) => why,
            other => panic!("expected MalformedPolicy, got {other:?}"),
        }
    }

    const ALICE: Principal<'static> = Principal::Key {
        access_key: "FKALICE",
        name: "alice",
        canonical_id: "464b414c494345",
    };

    fn decide(
        p: &Policy,
        who: Principal<'_>,
        action: &str,
        resource: &str,
        cx: &Context,
    ) -> Decision {
        p.evaluate(&Request {
            principal: who,
            action,
            resource,
            context: cx,
        })
    }

    #[test]
    fn a_public_read_policy_allows_anonymous_get_of_objects_only() {
        let p = policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::photos/*"}"#,
        );
        let cx = Context::default();
        assert_eq!(
            decide(
                &p,
                Principal::Anonymous,
                "s3:GetObject",
                "arn:aws:s3:::photos/a/b.jpg",
                &cx
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &p,
                Principal::Anonymous,
                "s3:PutObject",
                "arn:aws:s3:::photos/a",
                &cx
            ),
            Decision::NotApplicable
        );
        assert_eq!(
            decide(
                &p,
                Principal::Anonymous,
                "s3:ListBucket",
                "arn:aws:s3:::photos",
                &cx
            ),
            Decision::NotApplicable
        );
        assert!(p.is_public());
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = policy(
            r#"{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": "arn:aws:s3:::photos/*"},
               {"Effect": "Deny", "Principal": {"AWS": ["arn:aws:iam::x:user/alice"]}, "Action": "s3:Delete*",
                "Resource": "arn:aws:s3:::photos/*"}"#,
        );
        let cx = Context::default();
        let r = "arn:aws:s3:::photos/k";
        assert_eq!(decide(&p, ALICE, "s3:DeleteObject", r, &cx), Decision::Deny);
        assert_eq!(decide(&p, ALICE, "s3:GetObject", r, &cx), Decision::Allow);
        assert_eq!(
            decide(&p, Principal::Anonymous, "s3:DeleteObject", r, &cx),
            Decision::Allow
        );
    }

    #[test]
    fn principals_name_keys_by_canonical_id_access_key_or_user_arn() {
        for name in [
            "464b414c494345",
            "FKALICE",
            "arn:aws:iam::anything:user/alice",
            "arn:aws:iam::t:user/some/path/FKALICE",
            "arn:aws:iam::FKALICE:root",
        ] {
            let p = policy(&format!(
                r#"{{"Effect": "Allow", "Principal": {{"AWS": "{name}"}}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos/*"}}"#
            ));
            let cx = Context::default();
            assert_eq!(
                decide(&p, ALICE, "s3:GetObject", "arn:aws:s3:::photos/k", &cx),
                Decision::Allow,
                "{name}"
            );
            assert_eq!(
                decide(
                    &p,
                    Principal::Anonymous,
                    "s3:GetObject",
                    "arn:aws:s3:::photos/k",
                    &cx
                ),
                Decision::NotApplicable
            );
            assert!(!p.is_public());
        }
        let p = policy(
            r#"{"Effect": "Allow", "Principal": {"CanonicalUser": "464b414c494345"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos/*"}"#,
        );
        assert_eq!(
            decide(
                &p,
                ALICE,
                "s3:GetObject",
                "arn:aws:s3:::photos/k",
                &Context::default()
            ),
            Decision::Allow
        );
    }

    #[test]
    fn deny_with_not_principal_spares_only_the_named() {
        let p = policy(
            r#"{"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::a:user/alice"}, "Action": "s3:*", "Resource": ["arn:aws:s3:::photos", "arn:aws:s3:::photos/*"]}"#,
        );
        let cx = Context::default();
        assert_eq!(
            decide(&p, ALICE, "s3:ListBucket", "arn:aws:s3:::photos", &cx),
            Decision::NotApplicable
        );
        assert_eq!(
            decide(
                &p,
                Principal::Anonymous,
                "s3:ListBucket",
                "arn:aws:s3:::photos",
                &cx
            ),
            Decision::Deny
        );
    }

    #[test]
    fn not_action_and_not_resource_invert_the_match() {
        let p = policy(
            r#"{"Effect": "Deny", "Principal": "*", "NotAction": "s3:Get*", "NotResource": "arn:aws:s3:::photos/public/*"}"#,
        );
        let cx = Context::default();
        assert_eq!(
            decide(
                &p,
                ALICE,
                "s3:PutObject",
                "arn:aws:s3:::photos/private/x",
                &cx
            ),
            Decision::Deny
        );
        assert_eq!(
            decide(
                &p,
                ALICE,
                "s3:PutObject",
                "arn:aws:s3:::photos/public/x",
                &cx
            ),
            Decision::NotApplicable
        );
        assert_eq!(
            decide(
                &p,
                ALICE,
                "s3:GetObject",
                "arn:aws:s3:::photos/private/x",
                &cx
            ),
            Decision::NotApplicable
        );
    }

    #[test]
    fn malformed_documents_are_refused_with_a_reason() {
        assert!(matches!(
            Policy::parse("not json", B),
            Err(PolicyError::Malformed(_))
        ));
        assert!(matches!(
            Policy::parse("[1]", B),
            Err(PolicyError::Malformed(_))
        ));
        let big = format!("{{\"Id\": \"{}\"}}", "x".repeat(MAX_POLICY_BYTES));
        assert_eq!(Policy::parse(&big, B).unwrap_err(), PolicyError::TooLarge);
        assert!(matches!(
            Policy::parse(r#"{"Version": "2020-01-01", "Statement": []}"#, B),
            Err(PolicyError::Malformed(_))
        ));
        assert!(matches!(
            Policy::parse(r#"{"Version": "2012-10-17"}"#, B),
            Err(PolicyError::Malformed(_))
        ));
        let ok =
            r#""Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos/*""#;
        assert!(refused(&format!(r#"{{"Effect": "Maybe", {ok}}}"#)).contains("effect"));
        assert_eq!(
            refused(
                r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other/*"}"#
            ),
            "Policy has invalid resource"
        );
        assert_eq!(
            refused(
                r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}"#
            ),
            "Policy has invalid resource"
        );
        assert_eq!(
            refused(
                r#"{"Effect": "Allow", "Principal": "*", "Action": "ec2:RunInstances", "Resource": "arn:aws:s3:::photos"}"#
            ),
            "Policy has invalid action"
        );
        assert!(refused(r#"{"Effect": "Allow", "NotPrincipal": {"AWS": "x"}, "Action": "s3:*", "Resource": "arn:aws:s3:::photos"}"#)
            .contains("NotPrincipal"));
        assert!(
            refused(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::photos"}"#)
                .contains("Principal")
        );
        assert!(refused(r#"{"Effect": "Allow", "Principal": "someone", "Action": "s3:*", "Resource": "arn:aws:s3:::photos"}"#)
            .contains("principal"));
        assert!(refused(&format!(r#"{{"Effect": "Allow", {ok}, "Condition": {{"StringSortOf": {{"s3:prefix": "a"}}}}}}"#))
            .contains("Condition type"));
        assert!(refused(&format!(r#"{{"Effect": "Allow", {ok}, "Condition": {{"IpAddress": {{"aws:SourceIp": "nope"}}}}}}"#))
            .contains("Invalid value"));
        assert!(
            refused(&format!(
                r#"{{"Sid": "a", "Effect": "Allow", {ok}}}, {{"Sid": "a", "Effect": "Deny", {ok}}}"#
            ))
            .contains("unique")
        );
        assert!(
            refused(&format!(r#"{{"Effect": "Allow", "Extra": 1, {ok}}}"#))
                .contains("Unknown field")
        );
    }

    #[test]
    fn wildcard_bucket_resources_and_the_2008_version_are_accepted() {
        assert!(Policy::parse(
            r#"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:ListBucket", "Resource": ["arn:aws:s3:::*", "arn:aws:s3:::*/*"]}}"#,
            B
        )
        .is_ok());
        assert!(Policy::parse(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "arn:aws:s3:::pho?os"}}"#,
            B
        )
        .is_ok());
    }

    fn conditional(op_and_values: &str) -> Policy {
        policy(&format!(
            r#"{{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::photos", "arn:aws:s3:::photos/*"],
                "Condition": {op_and_values}}}"#
        ))
    }

    fn allows(p: &Policy, cx: &Context) -> bool {
        decide(p, ALICE, "s3:ListBucket", "arn:aws:s3:::photos", cx) == Decision::Allow
    }

    fn cx(pairs: &[(&str, &str)]) -> Context {
        let mut c = Context::default();
        for (k, v) in pairs {
            c.set(k, *v);
        }
        c
    }

    #[test]
    fn string_conditions_compare_as_aws_documents() {
        let p = conditional(r#"{"StringEquals": {"s3:prefix": ["home/", "pub/"]}}"#);
        assert!(allows(&p, &cx(&[("s3:prefix", "pub/")])));
        assert!(!allows(&p, &cx(&[("s3:prefix", "other/")])));
        assert!(!allows(&p, &cx(&[])));
        let p = conditional(r#"{"StringNotEquals": {"s3:prefix": "secret/"}}"#);
        assert!(allows(&p, &cx(&[("s3:prefix", "pub/")])));
        assert!(!allows(&p, &cx(&[("s3:prefix", "secret/")])));
        assert!(
            allows(&p, &cx(&[])),
            "negated operators hold for a missing key"
        );
        let p = conditional(r#"{"StringLike": {"S3:Prefix": "home/*/docs?"}}"#);
        assert!(allows(&p, &cx(&[("s3:prefix", "home/ann/docs1")])));
        assert!(!allows(&p, &cx(&[("s3:prefix", "home/ann/docs")])));
        let p = conditional(r#"{"StringNotLike": {"s3:prefix": "tmp*"}}"#);
        assert!(!allows(&p, &cx(&[("s3:prefix", "tmp/x")])));
        let p =
            conditional(r#"{"StringEqualsIgnoreCase": {"s3:x-amz-metadata-directive": "copy"}}"#);
        assert!(allows(&p, &cx(&[("s3:x-amz-metadata-directive", "COPY")])));
        let p =
            conditional(r#"{"StringLikeIfExists": {"aws:Referer": "http://www.example.com/*"}}"#);
        assert!(allows(&p, &cx(&[])));
        assert!(allows(
            &p,
            &cx(&[("aws:referer", "http://www.example.com/x")])
        ));
        assert!(!allows(&p, &cx(&[("aws:referer", "http://example.com")])));
    }

    #[test]
    fn numeric_date_bool_ip_and_null_conditions() {
        let p = conditional(r#"{"NumericLessThanEquals": {"s3:max-keys": "10"}}"#);
        assert!(allows(&p, &cx(&[("s3:max-keys", "10")])));
        assert!(!allows(&p, &cx(&[("s3:max-keys", "11")])));
        assert!(!allows(&p, &cx(&[("s3:max-keys", "ten")])));
        let p = conditional(
            r#"{"NumericGreaterThan": {"s3:max-keys": 5}, "NumericNotEquals": {"s3:max-keys": 7}}"#,
        );
        assert!(allows(&p, &cx(&[("s3:max-keys", "6")])));
        assert!(!allows(&p, &cx(&[("s3:max-keys", "7")])));
        let p = conditional(r#"{"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}"#);
        assert!(allows(
            &p,
            &cx(&[("aws:CurrentTime", "2025-06-01T12:00:00Z")])
        ));
        assert!(!allows(
            &p,
            &cx(&[("aws:CurrentTime", "2031-06-01T12:00:00Z")])
        ));
        let p = conditional(r#"{"DateGreaterThan": {"aws:EpochTime": "2020-01-01"}}"#);
        assert!(allows(&p, &cx(&[("aws:EpochTime", "1700000000")])));
        let p = conditional(r#"{"Bool": {"aws:SecureTransport": "false"}}"#);
        assert!(allows(&p, &cx(&[("aws:securetransport", "false")])));
        assert!(!allows(&p, &cx(&[("aws:securetransport", "true")])));
        let p = conditional(r#"{"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}"#);
        assert!(allows(&p, &cx(&[("aws:SourceIp", "10.1.2.3")])));
        assert!(allows(&p, &cx(&[("aws:SourceIp", "2001:db8::1")])));
        assert!(allows(&p, &cx(&[("aws:SourceIp", "::ffff:10.9.9.9")])));
        assert!(!allows(&p, &cx(&[("aws:SourceIp", "192.168.0.1")])));
        assert!(!p.is_public(), "a fixed source network is not public");
        let p = conditional(r#"{"NotIpAddress": {"aws:SourceIp": "127.0.0.1"}}"#);
        assert!(!allows(&p, &cx(&[("aws:SourceIp", "127.0.0.1")])));
        assert!(allows(&p, &cx(&[("aws:SourceIp", "127.0.0.2")])));
        let p = conditional(r#"{"Null": {"s3:x-amz-acl": "true"}}"#);
        assert!(allows(&p, &cx(&[])));
        assert!(!allows(&p, &cx(&[("s3:x-amz-acl", "private")])));
    }

    #[test]
    fn set_qualifiers_apply_to_multi_valued_keys() {
        let mut tags = Context::default();
        tags.set_all("s3:RequestObjectTagKeys", vec!["a".into(), "b".into()]);
        let p = conditional(
            r#"{"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["a", "b", "c"]}}"#,
        );
        assert!(allows(&p, &tags));
        assert!(
            allows(&p, &Context::default()),
            "ForAllValues holds for no values"
        );
        let p = conditional(r#"{"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["a"]}}"#);
        assert!(!allows(&p, &tags));
        let p =
            conditional(r#"{"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": ["b", "z"]}}"#);
        assert!(allows(&p, &tags));
        assert!(!allows(&p, &Context::default()));
    }

    #[test]
    fn tag_keys_in_condition_keys_keep_their_case() {
        let p = conditional(r#"{"StringEquals": {"s3:ExistingObjectTag/Security": "public"}}"#);
        assert!(p.uses_key("s3:existingobjecttag/"));
        assert!(allows(
            &p,
            &cx(&[("S3:existingObjectTag/Security", "public")])
        ));
        assert!(!allows(
            &p,
            &cx(&[("s3:ExistingObjectTag/security", "public")])
        ));
    }

    #[test]
    fn wildcards_match_runs_and_single_characters() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*c", "abbbc"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("photos/*/x*", "photos/a/b/xyz"));
        assert!(!wildcard_match("photos/*", "photo/x"));
        assert!(wildcard_match("**a", "bba"));
    }
}
