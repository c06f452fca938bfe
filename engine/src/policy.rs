//! Bucket policies: S3's policy language, parsed once when a policy is put (`MalformedPolicy`
//! for a bad document) and evaluated by [`crate::authz::authorize`].
//!
//! Supported: `Version` (`2012-10-17` or `2008-10-17`), `Id`, `Statement` (one object or a list)
//! with `Sid`, `Effect`, `Principal` / `NotPrincipal` (`"*"`, `{"AWS": ...}`,
//! `{"CanonicalUser": ...}`), `Action` / `NotAction` and `Resource` / `NotResource` with `*` and
//! `?` wildcards, `Condition` with the String*, Numeric*, Date*, Bool, IpAddress, NotIpAddress,
//! Null and Arn* operators and their `...IfExists` forms. A principal names a user by canonical
//! id, `arn:aws:iam::<id>:root`, or `arn:aws:iam:::user/<name>`; `*` is everyone, anonymous
//! included.

use serde_json::Value;

use crate::authz::{ConditionKeys, Principal};

/// The largest policy S3 accepts (20 KiB).
pub const MAX_POLICY_BYTES: usize = 20 * 1024;
/// Bounds that keep evaluation cheap whatever the document.
const MAX_STATEMENTS: usize = 100;
const MAX_VALUES: usize = 100;

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
    /// S3's "public" (see [`Policy::is_public`]), decided once at parse time.
    public: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// A list of patterns, or its complement (`NotAction`, `NotResource`, `NotPrincipal`).
#[derive(Clone, Debug, PartialEq)]
struct Patterns {
    values: Vec<String>,
    negated: bool,
}

#[derive(Clone, Debug, PartialEq)]
struct Statement {
    effect: Effect,
    principals: Patterns,
    actions: Patterns,
    resources: Patterns,
    conditions: Vec<Condition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Null,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        use Op::*;
        Some(match s {
            "StringEquals" => StringEquals,
            "StringNotEquals" => StringNotEquals,
            "StringEqualsIgnoreCase" => StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => StringNotEqualsIgnoreCase,
            "StringLike" => StringLike,
            "StringNotLike" => StringNotLike,
            "NumericEquals" => NumericEquals,
            "NumericNotEquals" => NumericNotEquals,
            "NumericLessThan" => NumericLessThan,
            "NumericLessThanEquals" => NumericLessThanEquals,
            "NumericGreaterThan" => NumericGreaterThan,
            "NumericGreaterThanEquals" => NumericGreaterThanEquals,
            "DateEquals" => DateEquals,
            "DateNotEquals" => DateNotEquals,
            "DateLessThan" => DateLessThan,
            "DateLessThanEquals" => DateLessThanEquals,
            "DateGreaterThan" => DateGreaterThan,
            "DateGreaterThanEquals" => DateGreaterThanEquals,
            "Bool" => Bool,
            "IpAddress" => IpAddress,
            "NotIpAddress" => NotIpAddress,
            "ArnEquals" => ArnEquals,
            "ArnNotEquals" => ArnNotEquals,
            "ArnLike" => ArnLike,
            "ArnNotLike" => ArnNotLike,
            "Null" => Null,
            _ => return None,
        })
    }

    /// Negated operators hold when no request value matches (and when the key is absent).
    fn negated(self) -> bool {
        use Op::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | NumericNotEquals
                | DateNotEquals
                | NotIpAddress
                | ArnNotEquals
                | ArnNotLike
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Condition {
    op: Op,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

/// What a policy says about one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyVerdict {
    pub explicit_deny: bool,
    pub allow: bool,
}

fn malformed(msg: &str) -> String {
    msg.to_string()
}

/// A string or a list of strings (S3 accepts both wherever a list is allowed).
fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    let out: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                _ => Err(malformed(&format!(
                    "{what} must be a string or list of strings"
                ))),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(malformed(&format!(
                "{what} must be a string or list of strings"
            )));
        }
    };
    if out.len() > MAX_VALUES {
        return Err(malformed(&format!("Too many values in {what}")));
    }
    Ok(out)
}

fn principals(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) if s == "*" => Ok(vec!["*".into()]),
        Value::Object(m) if !m.is_empty() => {
            let mut out = Vec::new();
            for (kind, ids) in m {
                if kind != "AWS" && kind != "CanonicalUser" {
                    return Err(malformed("Invalid principal in policy"));
                }
                out.extend(strings(ids, "Principal")?);
            }
            Ok(out)
        }
        _ => Err(malformed("Invalid principal in policy")),
    }
}

/// Parses and checks a bucket policy for `bucket` (the error is `MalformedPolicy`'s message).
pub fn parse(doc: &[u8], bucket: &str) -> Result<Policy, String> {
    if doc.len() > MAX_POLICY_BYTES {
        return Err(malformed("Policies must be less than 20 KB"));
    }
    let v: Value =
        serde_json::from_slice(doc).map_err(|_| malformed("Policies must be valid JSON"))?;
    let Value::Object(top) = &v else {
        return Err(malformed(
            "Policies must be valid JSON and the first byte must be '{'",
        ));
    };
    for k in top.keys() {
        if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
            return Err(malformed(&format!("Unknown field {k}")));
        }
    }
    match top.get("Version") {
        None => {}
        Some(Value::String(s)) if s == "2012-10-17" || s == "2008-10-17" => {}
        Some(_) => return Err(malformed("The policy must contain a valid version string")),
    }
    let list: Vec<&Value> = match top.get("Statement") {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => return Err(malformed("Missing required field Statement")),
    };
    if list.len() > MAX_STATEMENTS {
        return Err(malformed("Too many statements"));
    }
    let mut statements = Vec::with_capacity(list.len());
    for s in list {
        statements.push(statement(s, bucket)?);
    }
    let public = statements.iter().any(Statement::is_public);
    Ok(Policy { statements, public })
}

fn one_of<'a>(
    m: &'a serde_json::Map<String, Value>,
    yes: &str,
    no: &str,
) -> Result<(&'a Value, bool), String> {
    match (m.get(yes), m.get(no)) {
        (Some(v), None) => Ok((v, false)),
        (None, Some(v)) => Ok((v, true)),
        (None, None) => Err(malformed(&format!("Missing required field {yes}"))),
        (Some(_), Some(_)) => Err(malformed(&format!(
            "A statement may not have both {yes} and {no}"
        ))),
    }
}

fn statement(v: &Value, bucket: &str) -> Result<Statement, String> {
    let Value::Object(m) = v else {
        return Err(malformed("Statement must be an object"));
    };
    for k in m.keys() {
        if !matches!(
            k.as_str(),
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
            return Err(malformed(&format!("Unknown field {k}")));
        }
    }
    if let Some(sid) = m.get("Sid")
        && !sid.is_string()
    {
        return Err(malformed("Sid must be a string"));
    }
    let effect = match m.get("Effect") {
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(_) => return Err(malformed("Invalid effect")),
        None => return Err(malformed("Missing required field Effect")),
    };
    let (p, p_neg) = one_of(m, "Principal", "NotPrincipal")?;
    let principals = Patterns {
        values: principals(p)?,
        negated: p_neg,
    };
    let (a, a_neg) = one_of(m, "Action", "NotAction")?;
    let actions = strings(a, "Action")?;
    for a in &actions {
        let ok = a == "*" || a.to_ascii_lowercase().starts_with("s3:") && a.len() > 3;
        if !ok {
            return Err(malformed("Policy has invalid action"));
        }
    }
    let (r, r_neg) = one_of(m, "Resource", "NotResource")?;
    let resources = strings(r, "Resource")?;
    for r in &resources {
        // A bucket policy speaks of its own bucket (and its objects) only.
        let rest = r.strip_prefix("arn:aws:s3:::");
        let ok = r == "*"
            || rest.is_some_and(|rest| {
                let b = rest.split('/').next().unwrap_or("");
                wildcard(b, bucket, false)
            });
        if !ok {
            return Err(malformed("Policy has invalid resource"));
        }
    }
    let mut conditions = Vec::new();
    if let Some(c) = m.get("Condition") {
        let Value::Object(ops) = c else {
            return Err(malformed("Condition must be an object"));
        };
        for (name, keys) in ops {
            let (base, if_exists) = match name.strip_suffix("IfExists") {
                Some(b) => (b, true),
                None => (name.as_str(), false),
            };
            let op = Op::parse(base)
                .ok_or_else(|| malformed(&format!("Invalid Condition type : {name}")))?;
            let Value::Object(keys) = keys else {
                return Err(malformed("Condition block must be an object"));
            };
            for (key, values) in keys {
                let values: Vec<String> = match values {
                    Value::Bool(b) => vec![b.to_string()],
                    Value::Number(n) => vec![n.to_string()],
                    Value::Array(a) => a
                        .iter()
                        .map(|x| match x {
                            Value::String(s) => Ok(s.clone()),
                            Value::Bool(b) => Ok(b.to_string()),
                            Value::Number(n) => Ok(n.to_string()),
                            _ => Err(malformed("Invalid Condition value")),
                        })
                        .collect::<Result<_, _>>()?,
                    other => strings(other, "Condition")?,
                };
                if values.is_empty() || values.len() > MAX_VALUES {
                    return Err(malformed("Invalid Condition value"));
                }
                check_values(op, &values)?;
                conditions.push(Condition {
                    op,
                    if_exists,
                    key: key.to_ascii_lowercase(),
                    values,
                });
            }
        }
    }
    Ok(Statement {
        effect,
        principals,
        actions: Patterns {
            values: actions,
            negated: a_neg,
        },
        resources: Patterns {
            values: resources,
            negated: r_neg,
        },
        conditions,
    })
}

/// Values an operator can never compare are refused when the policy is put, as S3 does.
fn check_values(op: Op, values: &[String]) -> Result<(), String> {
    use Op::*;
    let bad = |what: &str| Err(malformed(&format!("Invalid Condition value for {what}")));
    for v in values {
        match op {
            NumericEquals
            | NumericNotEquals
            | NumericLessThan
            | NumericLessThanEquals
            | NumericGreaterThan
            | NumericGreaterThanEquals
                if v.parse::<f64>().is_err() =>
            {
                return bad("a Numeric operator");
            }
            DateEquals
            | DateNotEquals
            | DateLessThan
            | DateLessThanEquals
            | DateGreaterThan
            | DateGreaterThanEquals
                if date(v).is_none() =>
            {
                return bad("a Date operator");
            }
            Bool | Null if v != "true" && v != "false" => return bad("Bool / Null"),
            IpAddress | NotIpAddress if cidr(v).is_none() => return bad("an IpAddress operator"),
            _ => {}
        }
    }
    Ok(())
}

/// `*` (any run) and `?` (one character) matching, as S3 matches actions, resources and
/// StringLike values. Iterative with one backtrack point: linear-ish, never exponential.
pub fn wildcard(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let eq = |a: char, b: char| {
        if ignore_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && eq(p[pi], t[ti]))) {
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
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn date(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    if let Ok(d) = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")) {
        return Some(d.midnight().assume_utc().unix_timestamp());
    }
    s.parse::<i64>().ok()
}

fn cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((ip, bits))
}

fn in_cidr(ip: &str, net: &str) -> bool {
    let (Ok(ip), Some((net, bits))) = (ip.parse::<std::net::IpAddr>(), cidr(net)) else {
        return false;
    };
    match (ip, net) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn value_matches(op: Op, request: &str, policy: &str) -> bool {
    use Op::*;
    let num = |s: &str| s.parse::<f64>().ok();
    let cmp_num = |f: fn(f64, f64) -> bool| match (num(request), num(policy)) {
        (Some(a), Some(b)) => f(a, b),
        _ => false,
    };
    let cmp_date = |f: fn(i64, i64) -> bool| match (date(request), date(policy)) {
        (Some(a), Some(b)) => f(a, b),
        _ => false,
    };
    match op {
        StringEquals | StringNotEquals | ArnEquals | ArnNotEquals => request == policy,
        StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => request.eq_ignore_ascii_case(policy),
        StringLike | StringNotLike | ArnLike | ArnNotLike => wildcard(policy, request, false),
        NumericEquals | NumericNotEquals => cmp_num(|a, b| a == b),
        NumericLessThan => cmp_num(|a, b| a < b),
        NumericLessThanEquals => cmp_num(|a, b| a <= b),
        NumericGreaterThan => cmp_num(|a, b| a > b),
        NumericGreaterThanEquals => cmp_num(|a, b| a >= b),
        DateEquals | DateNotEquals => cmp_date(|a, b| a == b),
        DateLessThan => cmp_date(|a, b| a < b),
        DateLessThanEquals => cmp_date(|a, b| a <= b),
        DateGreaterThan => cmp_date(|a, b| a > b),
        DateGreaterThanEquals => cmp_date(|a, b| a >= b),
        Bool => request.eq_ignore_ascii_case(policy),
        IpAddress | NotIpAddress => in_cidr(request, policy),
        Null => false,
    }
}

impl Condition {
    fn holds(&self, keys: &ConditionKeys) -> bool {
        let found = keys
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&self.key))
            .map(|(_, v)| v);
        if self.op == Op::Null {
            let absent = found.is_none_or(|v| v.is_empty());
            return self.values.iter().any(|v| (v == "true") == absent);
        }
        let Some(got) = found.filter(|v| !v.is_empty()) else {
            return self.if_exists || self.op.negated();
        };
        let any = got
            .iter()
            .any(|r| self.values.iter().any(|p| value_matches(self.op, r, p)));
        if self.op.negated() { !any } else { any }
    }
}

impl Patterns {
    fn matches(&self, f: impl Fn(&str) -> bool) -> bool {
        self.values.iter().any(|v| f(v)) != self.negated
    }
}

fn principal_matches(pattern: &str, who: &Principal, keys: &ConditionKeys) -> bool {
    if pattern == "*" {
        return true;
    }
    let Principal::User { id } = who else {
        return false;
    };
    if pattern == id || pattern == format!("arn:aws:iam::{id}:root") {
        return true;
    }
    let name = keys.get("aws:username").and_then(|v| v.first());
    match (pattern.strip_prefix("arn:aws:iam:::user/"), name) {
        (Some(p), Some(n)) => p == n,
        // The user's own ARN (`aws:PrincipalArn`): its canonical id is its account.
        (None, Some(n)) => pattern == principal_arn(id, n),
        _ => false,
    }
}

/// A user's `aws:PrincipalArn`: `arn:aws:iam::<canonical id>:user/<name>` (every user is its
/// own account, named by its canonical id, as in the `arn:aws:iam::<id>:root` principal).
pub fn principal_arn(id: &str, name: &str) -> String {
    format!("arn:aws:iam::{id}:user/{name}")
}

/// Condition keys whose fixed value limits a statement to known principals or sources, so that
/// a statement to `*` under one of them is not public (S3's "The meaning of public"; and
/// `aws:username`, `aws:PrincipalArn`, `aws:PrincipalAccount` that name our users).
const RESTRICTING_KEYS: &[&str] = &[
    "aws:sourcearn",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceowner",
    "aws:sourceaccount",
    "aws:sourceorgid",
    "aws:principalorgid",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:username",
    "aws:userid",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "s3:dataaccesspointarn",
    "s3:dataaccesspointaccount",
];

impl Condition {
    /// Whether this condition pins the request to fixed principals or sources (the statement is
    /// then not public): a positive equality, or a pattern without wildcards, on a restricting
    /// key; or `aws:SourceIp` within fixed ranges no wider than /8 (IPv4) or /32 (IPv6).
    fn restricts(&self) -> bool {
        use Op::*;
        if self.if_exists {
            return false;
        }
        if self.key == "aws:sourceip" {
            return self.op == IpAddress
                && self.values.iter().all(|v| {
                    cidr(v).is_some_and(|(ip, bits)| bits >= if ip.is_ipv4() { 8 } else { 32 })
                });
        }
        let fixed = match self.op {
            StringEquals | StringEqualsIgnoreCase | ArnEquals => true,
            StringLike | ArnLike => self.values.iter().all(|v| !v.contains(['*', '?'])),
            _ => false,
        };
        if !fixed || !RESTRICTING_KEYS.contains(&self.key.as_str()) {
            return false;
        }
        // aws:userid "AROLEID:*" names any session of a role: not fixed.
        self.key != "aws:userid" || self.values.iter().all(|v| !v.ends_with(":*"))
    }
}

impl Statement {
    /// An Allow to everyone (`*`, `{"AWS": "*"}`, or a NotPrincipal) that no condition pins
    /// to fixed principals or sources.
    fn is_public(&self) -> bool {
        self.effect == Effect::Allow
            && (self.principals.negated || self.principals.values.iter().any(|p| p == "*"))
            && !self.conditions.iter().any(Condition::restricts)
    }
}

/// Parsed bucket policies by bucket, each kept with the exact document it was parsed from: a
/// decision parses only when the document read from the metadata tier differs from the cached
/// one (so a policy put or deleted through any gateway takes effect at once). Bounded.
pub struct PolicyCache {
    entries: std::sync::Mutex<CacheMap>,
    capacity: usize,
}

#[derive(Default)]
struct CacheMap {
    by_bucket: std::collections::HashMap<String, CacheEntry>,
    /// A use counter, for least-recently-used eviction.
    tick: u64,
}

struct CacheEntry {
    doc: String,
    policy: Option<std::sync::Arc<Policy>>,
    used: u64,
}

impl PolicyCache {
    pub fn new(capacity: usize) -> Self {
        PolicyCache {
            entries: Default::default(),
            capacity: capacity.max(1),
        }
    }

    /// The parsed policy `doc` of `bucket` (`None` if it does not parse; stored documents
    /// always did).
    pub fn get(&self, bucket: &str, doc: &str) -> Option<std::sync::Arc<Policy>> {
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        guard.tick += 1;
        let tick = guard.tick;
        let m = &mut guard.by_bucket;
        if let Some(e) = m.get_mut(bucket)
            && e.doc == doc
        {
            e.used = tick;
            return e.policy.clone();
        }
        // Parsing under the lock is bounded (20 KiB, 100 statements) and keeps one parse per
        // change even when many requests arrive together.
        let policy = parse(doc.as_bytes(), bucket).ok().map(std::sync::Arc::new);
        if !m.contains_key(bucket) && m.len() >= self.capacity {
            // Evict the least recently used bucket.
            if let Some(old) = m.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) {
                m.remove(&old);
            }
        }
        m.insert(
            bucket.to_string(),
            CacheEntry {
                doc: doc.to_string(),
                policy: policy.clone(),
                used: tick,
            },
        );
        policy
    }

    /// How many buckets' policies are cached (tests, metrics).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_bucket
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Policy {
    /// Whether any statement denies, and whether any allows, `action` (an S3 action name) on
    /// `arn` for `who` under `keys`.
    pub fn evaluate(
        &self,
        who: &Principal,
        action: &str,
        arn: &str,
        keys: &ConditionKeys,
    ) -> PolicyVerdict {
        let mut out = PolicyVerdict::default();
        for s in &self.statements {
            let applies = s.principals.matches(|p| principal_matches(p, who, keys))
                && s.actions.matches(|a| wildcard(a, action, true))
                && s.resources.matches(|r| wildcard(r, arn, false))
                && s.conditions.iter().all(|c| c.holds(keys));
            if applies {
                match s.effect {
                    Effect::Deny => out.explicit_deny = true,
                    Effect::Allow => out.allow = true,
                }
            }
        }
        out
    }

    /// S3's "public" (GetBucketPolicyStatus, BlockPublicPolicy, RestrictPublicBuckets): some
    /// Allow to everyone (`*`, or a NotPrincipal) that no condition pins to fixed principals or
    /// sources (fixed `aws:SourceIp` ranges, `aws:SourceArn`, `aws:PrincipalArn`,
    /// `aws:username`, ... see `RESTRICTING_KEYS`).
    pub fn is_public(&self) -> bool {
        self.public
    }
}

/// The fuzz target's body (`fuzz/fuzz_targets/bucket_policy.rs`): any bytes parse or are
/// refused without panicking, and a parsed policy evaluates without panicking.
pub fn fuzz_policy(data: &[u8]) {
    if let Ok(p) = parse(data, "bucket") {
        let mut keys = ConditionKeys::new();
        keys.insert("aws:SourceIp".into(), vec!["127.0.0.1".into()]);
        keys.insert("aws:username".into(), vec!["alice".into()]);
        keys.insert("s3:prefix".into(), vec!["a/b".into()]);
        for who in [Principal::Anonymous, Principal::User { id: "abc".into() }] {
            let _ = p.evaluate(&who, "s3:GetObject", "arn:aws:s3:::bucket/a/b", &keys);
            let _ = p.evaluate(&who, "s3:ListBucket", "arn:aws:s3:::bucket", &keys);
        }
        let _ = p.is_public();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> ConditionKeys {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    const ANON: Principal = Principal::Anonymous;

    #[test]
    fn malformed_documents_are_refused() {
        for doc in [
            "",
            "[]",
            "not json",
            r#"{"Statement": []}"#,
            r#"{"Version": "2020-01-01", "Statement": {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
            r#"{"Statement": {"Effect":"Maybe","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
            r#"{"Statement": {"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
            r#"{"Statement": {"Effect":"Allow","Principal":"*","Action":"ec2:Run","Resource":"arn:aws:s3:::b/*"}}"#,
            r#"{"Statement": {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}}"#,
            r#"{"Statement": {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringFoo":{"a":"b"}}}}"#,
            r#"{"Statement": {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"300.1.1.1/8"}}}}"#,
            r#"{"Statement": {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","NotAction":"s3:PutObject","Resource":"arn:aws:s3:::b/*"}}"#,
            r#"{"Statement": {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Extra":1}}"#,
        ] {
            assert!(parse(doc.as_bytes(), "b").is_err(), "{doc}");
        }
        let big = format!(r#"{{"Id":"{}"}}"#, "x".repeat(MAX_POLICY_BYTES));
        assert!(parse(big.as_bytes(), "b").is_err());
    }

    #[test]
    fn allow_deny_wildcards_principals_and_conditions() {
        let doc = r#"{
          "Version": "2012-10-17",
          "Statement": [
            {"Sid": "public", "Effect": "Allow", "Principal": "*",
             "Action": ["s3:Get*"], "Resource": "arn:aws:s3:::b/pub/*"},
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
             "Resource": ["arn:aws:s3:::b/pub/secret?"]},
            {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/alice"]},
             "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
             "Condition": {"StringLike": {"s3:prefix": "home/alice/*"},
                           "IpAddressIfExists": {"aws:SourceIp": "127.0.0.0/8"}}},
            {"Effect": "Deny", "Principal": "*", "NotAction": "s3:GetObject",
             "Resource": "arn:aws:s3:::b/ro/*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
          ]}"#;
        let p = parse(doc.as_bytes(), "b").unwrap();
        let none = ConditionKeys::new();
        let v = p.evaluate(&ANON, "s3:GetObject", "arn:aws:s3:::b/pub/x", &none);
        assert_eq!((v.allow, v.explicit_deny), (true, false));
        let v = p.evaluate(&ANON, "s3:GetObject", "arn:aws:s3:::b/pub/secret1", &none);
        assert!(v.explicit_deny);
        let v = p.evaluate(&ANON, "s3:PutObject", "arn:aws:s3:::b/pub/x", &none);
        assert_eq!(v, PolicyVerdict::default());
        let alice = Principal::User { id: "a1".into() };
        let k = keys(&[
            ("aws:username", "alice"),
            ("s3:prefix", "home/alice/docs"),
            ("aws:SourceIp", "127.0.0.1"),
        ]);
        assert!(
            p.evaluate(&alice, "s3:ListBucket", "arn:aws:s3:::b", &k)
                .allow
        );
        let k2 = keys(&[("aws:username", "alice"), ("s3:prefix", "home/bob/")]);
        assert!(
            !p.evaluate(&alice, "s3:ListBucket", "arn:aws:s3:::b", &k2)
                .allow
        );
        let k3 = keys(&[
            ("aws:username", "alice"),
            ("s3:prefix", "home/alice/x"),
            ("aws:SourceIp", "10.0.0.1"),
        ]);
        assert!(
            !p.evaluate(&alice, "s3:ListBucket", "arn:aws:s3:::b", &k3)
                .allow
        );
        // NotAction + Bool
        let plain = keys(&[("aws:SecureTransport", "false")]);
        assert!(
            p.evaluate(&ANON, "s3:PutObject", "arn:aws:s3:::b/ro/k", &plain)
                .explicit_deny
        );
        assert!(
            !p.evaluate(&ANON, "s3:GetObject", "arn:aws:s3:::b/ro/k", &plain)
                .explicit_deny
        );
        assert!(p.is_public());
    }

    #[test]
    fn operators_as_s3_defines_them() {
        let cond = |op: &str, key: &str, val: &str| {
            let doc = format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*","Condition":{{"{op}":{{"{key}":"{val}"}}}}}}}}"#
            );
            parse(doc.as_bytes(), "b").unwrap()
        };
        let allows =
            |p: &Policy, k: &ConditionKeys| p.evaluate(&ANON, "s3:GetObject", "x", k).allow;
        let n = keys(&[("s3:max-keys", "10")]);
        assert!(allows(
            &cond("NumericLessThanEquals", "s3:max-keys", "10"),
            &n
        ));
        assert!(!allows(&cond("NumericLessThan", "s3:max-keys", "10"), &n));
        assert!(!allows(
            &cond("NumericLessThan", "s3:max-keys", "10"),
            &ConditionKeys::new()
        ));
        assert!(allows(
            &cond("NumericLessThanIfExists", "s3:max-keys", "10"),
            &ConditionKeys::new()
        ));
        // negated operators hold for an absent key
        assert!(allows(
            &cond("StringNotEquals", "s3:x-amz-acl", "public-read"),
            &ConditionKeys::new()
        ));
        assert!(!allows(
            &cond("StringNotEquals", "s3:x-amz-acl", "public-read"),
            &keys(&[("s3:x-amz-acl", "public-read")])
        ));
        assert!(allows(
            &cond("StringEqualsIgnoreCase", "aws:username", "ALICE"),
            &keys(&[("aws:username", "alice")])
        ));
        let t = keys(&[("aws:CurrentTime", "2026-06-01T00:00:00Z")]);
        assert!(allows(
            &cond("DateGreaterThan", "aws:CurrentTime", "2026-01-01T00:00:00Z"),
            &t
        ));
        assert!(!allows(
            &cond("DateLessThan", "aws:CurrentTime", "2026-01-01"),
            &t
        ));
        assert!(allows(
            &cond("Null", "s3:prefix", "true"),
            &ConditionKeys::new()
        ));
        assert!(!allows(
            &cond("Null", "s3:prefix", "true"),
            &keys(&[("s3:prefix", "a")])
        ));
        assert!(allows(
            &cond("NotIpAddress", "aws:SourceIp", "10.0.0.0/8"),
            &keys(&[("aws:SourceIp", "127.0.0.1")])
        ));
        assert!(allows(
            &cond("IpAddress", "aws:SourceIp", "::1/128"),
            &keys(&[("aws:SourceIp", "::1")])
        ));
        assert!(allows(
            &cond("ArnLike", "aws:PrincipalArn", "arn:aws:iam:::user/*"),
            &keys(&[("aws:PrincipalArn", "arn:aws:iam:::user/bob")])
        ));
        assert!(!cond("StringEquals", "aws:username", "x").is_public());
    }

    #[test]
    fn wildcards_never_blow_up() {
        assert!(wildcard("a*b?c", "axxxbyc", false));
        assert!(!wildcard("a*b?c", "axxxbc", false));
        assert!(wildcard("S3:get*", "s3:GetObject", true));
        let p = "*a".repeat(200) + "b";
        let t = "a".repeat(5000);
        let started = std::time::Instant::now();
        assert!(!wildcard(&p, &t, false));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn fuzz_body_on_stable() {
        // Random bytes, and mutations of a valid policy (the interesting part of the space).
        let valid = br#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:Get*","s3:List*"],"Resource":["arn:aws:s3:::bucket","arn:aws:s3:::bucket/*"],"Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"},"StringLikeIfExists":{"s3:prefix":"a/*"},"NumericLessThan":{"s3:max-keys":"5"},"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"},"Null":{"s3:x":"true"}}}]}"#;
        assert!(parse(valid, "bucket").is_ok());
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..3000 {
            let mut data = valid.to_vec();
            let edits = 1 + (next() % 4) as usize;
            for _ in 0..edits {
                let pos = (next() as usize) % data.len();
                match next() % 3 {
                    0 => data[pos] = next() as u8,
                    1 => {
                        data.remove(pos);
                    }
                    _ => data.insert(pos, b"{}[]\",:*?"[(next() % 9) as usize]),
                }
            }
            if i % 3 == 0 {
                data = (0..(next() % 64)).map(|_| next() as u8).collect();
            }
            fuzz_policy(&data);
        }
    }

    #[test]
    fn public_as_s3_defines_it() {
        let with = |principal: &str, cond: &str| {
            let doc = format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":{principal},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"{cond}}}}}"#
            );
            parse(doc.as_bytes(), "b").unwrap().is_public()
        };
        assert!(with(r#""*""#, ""));
        assert!(with(r#"{"AWS":"*"}"#, ""));
        assert!(!with(r#"{"AWS":"arn:aws:iam:::user/bob"}"#, ""));
        for (cond, public) in [
            (r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#, false),
            (
                r#"{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","0.0.0.0/1"]}}"#,
                true,
            ),
            (r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#, false),
            (r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#, true),
            (
                r#"{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::x:user/bob"}}"#,
                false,
            ),
            (
                r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/bob"}}"#,
                true,
            ),
            (r#"{"StringEquals":{"aws:userid":"AROAEXAMPLE:*"}}"#, true),
            (
                r#"{"StringEquals":{"aws:SourceArn":"arn:aws:s3:::logs"}}"#,
                false,
            ),
            (r#"{"StringEqualsIfExists":{"aws:username":"bob"}}"#, true),
            (r#"{"StringEquals":{"s3:prefix":"home/"}}"#, true),
            (r#"{"Bool":{"aws:SecureTransport":"true"}}"#, true),
        ] {
            assert_eq!(
                with(r#""*""#, &format!(r#","Condition":{cond}"#)),
                public,
                "{cond}"
            );
        }
        // a Deny to everyone is never public
        let deny =
            br#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"}}"#;
        assert!(!parse(deny, "b").unwrap().is_public());
    }

    #[test]
    fn the_cache_follows_the_stored_document_and_stays_bounded() {
        let allow = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}}"#;
        let deny = r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"*"}}"#;
        let c = PolicyCache::new(2);
        let none = ConditionKeys::new();
        let verdict = |doc: &str, bucket: &str| {
            c.get(bucket, doc)
                .unwrap()
                .evaluate(&ANON, "s3:GetObject", "x", &none)
        };
        assert!(verdict(allow, "b").allow);
        let first = c.get("b", allow).unwrap();
        assert!(
            std::sync::Arc::ptr_eq(&first, &c.get("b", allow).unwrap()),
            "parsed once"
        );
        // another document for the same bucket (put through any gateway): parsed anew
        assert!(verdict(deny, "b").explicit_deny);
        assert!(c.get("b", "not json").is_none());
        for i in 0..10 {
            assert!(verdict(allow, &format!("b{i}")).allow);
        }
        assert_eq!(c.len(), 2);
    }
}
