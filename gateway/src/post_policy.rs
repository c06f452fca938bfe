//! The POST policy of an HTML-form upload (PostObject): a base64 JSON document with an
//! `expiration` and a list of `conditions` (`{"field": "value"}`, `["eq", "$field", "value"]`,
//! `["starts-with", "$field", "prefix"]`, `["content-length-range", min, max]`) that the form
//! must meet. Parsing and checking are pure functions of untrusted input (the document and the
//! form fields): the fuzz target `fuzz/fuzz_targets/post_policy.rs` runs [`fuzz_policy`], and so
//! does the stable test `tests::fuzz_body_on_stable`. Messages are S3's as clients observed
//! them ("Invalid Policy: ...", "Invalid according to Policy: ...").

use base64::Engine as _;
use serde_json::Value;

/// A parsed POST policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PostPolicy {
    /// Unix time (milliseconds) after which the policy is expired.
    pub expiration_ms: i64,
    pub conditions: Vec<Condition>,
}

/// One condition of a POST policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The field (lowercase, `$` removed) equals `value`; `field` is `None` when the policy
    /// named it without `$` (S3 then fails the condition).
    Eq {
        field: Option<String>,
        value: String,
        text: String,
    },
    StartsWith {
        field: Option<String>,
        value: String,
        text: String,
    },
    /// The file's size in bytes, both bounds inclusive; `None` when a bound is not a number
    /// (S3 fails the condition rather than the document).
    ContentLengthRange {
        range: Option<(u64, u64)>,
        text: String,
    },
}

/// Why a form does not meet its policy, with the S3 error it is answered with.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    /// 403 AccessDenied "Invalid according to Policy: Policy expired."
    Expired,
    /// 403 AccessDenied "Invalid according to Policy: Policy Condition failed: [...]"
    ConditionFailed(String),
    /// 403 AccessDenied "Invalid according to Policy: Extra input fields: a, b"
    ExtraFields(Vec<String>),
}

impl Violation {
    pub fn message(&self) -> String {
        match self {
            Violation::Expired => "Invalid according to Policy: Policy expired.".into(),
            Violation::ConditionFailed(t) => {
                format!("Invalid according to Policy: Policy Condition failed: {t}")
            }
            Violation::ExtraFields(names) => format!(
                "Invalid according to Policy: Extra input fields: {}",
                names.join(", ")
            ),
        }
    }
}

/// The size of the file against `content-length-range`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeViolation {
    /// 400 EntityTooSmall with ProposedSize and MinSizeAllowed.
    TooSmall { min: u64 },
    /// 400 EntityTooLarge with ProposedSize and MaxSizeAllowed.
    TooLarge { max: u64 },
}

/// Form fields the coverage rule exempts (S3: signature, file, policy, `x-ignore-*`; SigV2's
/// AWSAccessKeyId and signature).
pub fn exempt_field(lower: &str) -> bool {
    matches!(
        lower,
        "x-amz-signature" | "file" | "policy" | "awsaccesskeyid" | "signature"
    ) || lower.starts_with("x-ignore-")
}

fn invalid(m: &str) -> String {
    format!("Invalid Policy: {m}")
}

/// `["op", "$field", "value"]` as S3 prints a condition in its messages.
fn render(op: &str, field: &str, value: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!("[{}, {}, {}]", q(op), q(field), q(value))
}

fn field_of(name: &str) -> Option<String> {
    name.strip_prefix('$').map(|f| f.to_ascii_lowercase())
}

/// Parses an ISO 8601 UTC time as S3 accepts for `expiration`: `YYYY-MM-DDTHH:MM:SS(.fff)Z`.
fn parse_expiration(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = &s[19..s.len() - 1];
    let millis = if frac.is_empty() {
        0
    } else {
        let digits = frac.strip_prefix('.')?;
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let padded = format!("{digits:0<3}");
        padded[..3].parse::<i64>().ok()?
    };
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(sec).ok()?,
    )
    .ok()?;
    let at = time::PrimitiveDateTime::new(date, t).assume_utc();
    Some(at.unix_timestamp() * 1000 + millis)
}

/// A content-length-range bound: a non-negative integer, or a string of one.
fn bound(v: &Value) -> Result<Option<u64>, String> {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Ok(Some(u)),
            (None, Some(_)) => Err(invalid(
                "Invalid content-length-range: bounds must not be negative.",
            )),
            _ => Err(invalid("Invalid JSON.")),
        },
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(n) if n < 0 => Err(invalid(
                "Invalid content-length-range: bounds must not be negative.",
            )),
            Ok(n) => Ok(Some(n as u64)),
            Err(_) => Ok(None),
        },
        _ => Err(invalid("Invalid JSON.")),
    }
}

fn condition(c: &Value) -> Result<Condition, String> {
    match c {
        Value::Object(m) => {
            if m.len() != 1 {
                return Err(invalid(
                    "Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.",
                ));
            }
            let (k, v) = m.iter().next().expect("one property");
            let Value::String(v) = v else {
                return Err(match v {
                    Value::Null => invalid("Invalid JSON."),
                    _ => invalid("Invalid Simple-Condition: value must be a string."),
                });
            };
            Ok(Condition::Eq {
                field: Some(k.to_ascii_lowercase()),
                value: v.clone(),
                text: render("eq", &format!("${k}"), v),
            })
        }
        Value::Array(a) => {
            let Some(op) = a.first() else {
                return Err(invalid("Invalid Condition: missing operation identifier."));
            };
            let Value::String(op) = op else {
                return Err(invalid("Invalid JSON."));
            };
            let lower = op.to_ascii_lowercase();
            match lower.as_str() {
                "eq" | "starts-with" => {
                    if a.len() != 3 {
                        return Err(invalid(&format!(
                            "Invalid {op}: wrong number of arguments."
                        )));
                    }
                    let (Value::String(f), Value::String(v)) = (&a[1], &a[2]) else {
                        return Err(invalid("Invalid JSON."));
                    };
                    let text = render(op, f, v);
                    let (field, value) = (field_of(f), v.clone());
                    Ok(if lower == "eq" {
                        Condition::Eq { field, value, text }
                    } else {
                        Condition::StartsWith { field, value, text }
                    })
                }
                "content-length-range" => {
                    if a.len() != 3 {
                        return Err(invalid(&format!(
                            "Invalid {op}: wrong number of arguments."
                        )));
                    }
                    let (min, max) = (bound(&a[1])?, bound(&a[2])?);
                    let show = |v: &Value| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let text = render(op, &show(&a[1]), &show(&a[2]));
                    let text = match (&a[1], &a[2]) {
                        (Value::Number(x), Value::Number(y)) => format!("[\"{op}\", {x}, {y}]"),
                        _ => text,
                    };
                    Ok(Condition::ContentLengthRange {
                        range: min.zip(max),
                        text,
                    })
                }
                _ => Err(invalid(&format!(
                    "Invalid Condition: unknown operation '{op}'."
                ))),
            }
        }
        _ => Err(invalid("Invalid condition test: must be a List or Object.")),
    }
}

/// Parses the `policy` field as sent (base64 of the JSON document). `Err`: the message of a
/// 400 InvalidPolicyDocument.
pub fn parse(policy_b64: &str) -> Result<PostPolicy, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(policy_b64.trim().as_bytes())
        .map_err(|_| invalid("invalid Base64 encoding."))?;
    let doc: Value = serde_json::from_slice(&raw).map_err(|_| invalid("Invalid JSON."))?;
    let Value::Object(top) = doc else {
        return Err(invalid("Invalid JSON."));
    };
    let mut expiration = None;
    let mut conditions = None;
    for (k, v) in &top {
        match k.as_str() {
            "expiration" => expiration = Some(v),
            "conditions" => conditions = Some(v),
            other => {
                return Err(invalid(&format!(
                    "Unexpected: '{}'",
                    other.to_ascii_lowercase()
                )));
            }
        }
    }
    let expiration = expiration.ok_or_else(|| invalid("Policy missing expiration."))?;
    let expiration_ms = match expiration {
        Value::String(s) => parse_expiration(s),
        _ => None,
    }
    .ok_or_else(|| {
        let shown = match expiration {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        invalid(&format!("Invalid 'expiration' value: '{shown}'"))
    })?;
    let Some(Value::Array(list)) = conditions else {
        return Err(match conditions {
            None => invalid("Policy missing conditions."),
            Some(_) => invalid("Invalid 'conditions' value: must be a List."),
        });
    };
    let conditions = list.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
    Ok(PostPolicy {
        expiration_ms,
        conditions,
    })
}

impl PostPolicy {
    /// The bounds of `content-length-range`, if the policy has one with numeric bounds (the
    /// tightest when it has several).
    pub fn size_range(&self) -> Option<(u64, u64)> {
        let mut out: Option<(u64, u64)> = None;
        for c in &self.conditions {
            if let Condition::ContentLengthRange {
                range: Some((lo, hi)),
                ..
            } = c
            {
                out = Some(match out {
                    None => (*lo, *hi),
                    Some((a, b)) => (a.max(*lo), b.min(*hi)),
                });
            }
        }
        out
    }

    /// Checks the form against the policy before the file is read: expiration, every
    /// `eq` / `starts-with` condition, and that every field is named by a condition.
    /// `fields`: (name as sent, value) in form order, `bucket` the bucket the URL names.
    pub fn check_fields(
        &self,
        now_ms: i64,
        bucket: &str,
        fields: &[(String, String)],
    ) -> Result<(), Violation> {
        if now_ms >= self.expiration_ms {
            return Err(Violation::Expired);
        }
        let value_of = |name: &str| -> Option<&str> {
            if name == "bucket" {
                return Some(bucket);
            }
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let mut named: Vec<&str> = Vec::new();
        for c in &self.conditions {
            let ok = match c {
                Condition::Eq { field, value, .. } => {
                    if let Some(f) = field {
                        named.push(f);
                    }
                    field
                        .as_deref()
                        .and_then(value_of)
                        .is_some_and(|v| v == value)
                }
                Condition::StartsWith { field, value, .. } => {
                    if let Some(f) = field {
                        named.push(f);
                    }
                    match field.as_deref() {
                        None => false,
                        // Content-Type lists: every type in the list must match.
                        Some("content-type") => value_of("content-type")
                            .is_some_and(|v| v.split(',').all(|t| t.trim().starts_with(value))),
                        Some(f) => value_of(f).is_some_and(|v| v.starts_with(value)),
                    }
                }
                Condition::ContentLengthRange { range, .. } => range.is_some(),
            };
            if !ok {
                let text = match c {
                    Condition::Eq { text, .. }
                    | Condition::StartsWith { text, .. }
                    | Condition::ContentLengthRange { text, .. } => text.clone(),
                };
                return Err(Violation::ConditionFailed(text));
            }
        }
        let extra: Vec<String> = fields
            .iter()
            .filter(|(n, _)| {
                let lower = n.to_ascii_lowercase();
                !exempt_field(&lower) && !named.iter().any(|f| *f == lower)
            })
            .map(|(n, _)| n.clone())
            .collect();
        if !extra.is_empty() {
            return Err(Violation::ExtraFields(extra));
        }
        Ok(())
    }

    /// Checks the file's size against `content-length-range` once it is known.
    pub fn check_size(&self, size: u64) -> Result<(), SizeViolation> {
        match self.size_range() {
            Some((min, _)) if size < min => Err(SizeViolation::TooSmall { min }),
            Some((_, max)) if size > max => Err(SizeViolation::TooLarge { max }),
            _ => Ok(()),
        }
    }
}

/// The fuzz body: parse arbitrary bytes (as the base64 text and as the decoded JSON) and check
/// any policy that parses against a form; must never panic.
pub fn fuzz_policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    for doc in [text.as_ref(), encoded.as_str()] {
        if let Ok(p) = parse(doc) {
            let fields = vec![
                ("key".to_string(), "user/a.txt".to_string()),
                (
                    "Content-Type".to_string(),
                    "image/png,image/gif".to_string(),
                ),
                ("x-amz-meta-x".to_string(), text.chars().take(64).collect()),
            ];
            let _ = p.check_fields(0, "bucket", &fields);
            let _ = p.check_fields(i64::MAX, "bucket", &fields);
            let _ = p.check_size(0);
            let _ = p.check_size(u64::MAX);
            let _ = p.size_range();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const FUTURE: &str = "2099-01-01T00:00:00.000Z";

    #[test]
    fn boto3_policy_parses_and_checks() {
        let doc = format!(
            r#"{{"expiration": "{FUTURE}", "conditions": [{{"bucket": "b"}}, ["starts-with", "$key", "user/"], ["content-length-range", 1, 10], {{"x-amz-algorithm": "AWS4-HMAC-SHA256"}}]}}"#
        );
        let p = parse(&b64(&doc)).unwrap();
        assert_eq!(p.size_range(), Some((1, 10)));
        let f = fields(&[
            ("key", "user/a"),
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("policy", "..."),
            ("x-amz-signature", "s"),
            ("x-ignore-me", "1"),
        ]);
        assert_eq!(p.check_fields(0, "b", &f), Ok(()));
        assert_eq!(
            p.check_fields(0, "other", &f),
            Err(Violation::ConditionFailed(
                r#"["eq", "$bucket", "b"]"#.into()
            ))
        );
        let bad = fields(&[
            ("key", "elsewhere/a"),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        ]);
        let v = p.check_fields(0, "b", &bad).unwrap_err();
        assert_eq!(
            v.message(),
            r#"Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "user/"]"#
        );
        let extra = fields(&[
            ("key", "user/a"),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            ("x-amz-meta-note", "n"),
        ]);
        assert_eq!(
            p.check_fields(0, "b", &extra).unwrap_err().message(),
            "Invalid according to Policy: Extra input fields: x-amz-meta-note"
        );
        assert_eq!(p.check_fields(i64::MAX, "b", &f), Err(Violation::Expired));
        assert_eq!(p.check_size(0), Err(SizeViolation::TooSmall { min: 1 }));
        assert_eq!(p.check_size(11), Err(SizeViolation::TooLarge { max: 10 }));
        assert_eq!(p.check_size(10), Ok(()));
        assert_eq!(p.check_size(1), Ok(()));
    }

    #[test]
    fn condition_names_are_case_insensitive_values_are_not() {
        let doc = format!(
            r#"{{"expiration": "{FUTURE}", "conditions": [["StArTs-WiTh", "$KeY", "foo"], {{"AcL": "private"}}, ["eq", "$Content-Type", "text/plain"]]}}"#
        );
        let p = parse(&b64(&doc)).unwrap();
        let f = fields(&[
            ("kEy", "foo.txt"),
            ("aCl", "private"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(p.check_fields(0, "b", &f), Ok(()));
        let f = fields(&[
            ("key", "FOO.txt"),
            ("acl", "private"),
            ("content-type", "text/plain"),
        ]);
        assert!(p.check_fields(0, "b", &f).is_err());
    }

    #[test]
    fn content_type_lists_and_absent_fields() {
        let doc = format!(
            r#"{{"expiration": "{FUTURE}", "conditions": [["starts-with", "$Content-Type", "image/"], ["starts-with", "$x-amz-meta-a", ""]]}}"#
        );
        let p = parse(&b64(&doc)).unwrap();
        let ok = fields(&[
            ("Content-Type", "image/png, image/gif"),
            ("x-amz-meta-a", ""),
        ]);
        assert_eq!(p.check_fields(0, "b", &ok), Ok(()));
        let mixed = fields(&[
            ("Content-Type", "image/png,text/plain"),
            ("x-amz-meta-a", ""),
        ]);
        assert!(p.check_fields(0, "b", &mixed).is_err());
        // A condition on an absent field fails, even with an empty prefix.
        let absent = fields(&[("Content-Type", "image/png")]);
        assert!(matches!(
            p.check_fields(0, "b", &absent),
            Err(Violation::ConditionFailed(_))
        ));
    }

    #[test]
    fn malformed_documents_are_invalid_policy_documents() {
        let cases: &[(&str, &str)] = &[
            ("not base64 !!", "Invalid Policy: invalid Base64 encoding."),
            ("{", "Invalid Policy: Invalid JSON."),
            (
                r#"{"conditions": []}"#,
                "Invalid Policy: Policy missing expiration.",
            ),
            (
                &format!(r#"{{"expiration": "{FUTURE}"}}"#),
                "Invalid Policy: Policy missing conditions.",
            ),
            (
                &format!(r#"{{"EXPIRATION": "{FUTURE}", "conditions": []}}"#),
                "Invalid Policy: Unexpected: 'expiration'",
            ),
            (
                r#"{"expiration": "2015-10-17 03:15:59 UTC", "conditions": []}"#,
                "Invalid Policy: Invalid 'expiration' value: '2015-10-17 03:15:59 UTC'",
            ),
            (
                &format!(r#"{{"expiration": "{FUTURE}", "conditions": {{}}}}"#),
                "Invalid Policy: Invalid 'conditions' value: must be a List.",
            ),
            (
                &format!(r#"{{"expiration": "{FUTURE}", "conditions": [{{}}]}}"#),
                "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.",
            ),
            (
                &format!(r#"{{"expiration": "{FUTURE}", "conditions": [{{"a": 1}}]}}"#),
                "Invalid Policy: Invalid Simple-Condition: value must be a string.",
            ),
            (
                &format!(
                    r#"{{"expiration": "{FUTURE}", "conditions": [["content-length-range", 0]]}}"#
                ),
                "Invalid Policy: Invalid content-length-range: wrong number of arguments.",
            ),
            (
                &format!(
                    r#"{{"expiration": "{FUTURE}", "conditions": [["content-length-range", 0, 512.0]]}}"#
                ),
                "Invalid Policy: Invalid JSON.",
            ),
            (
                &format!(
                    r#"{{"expiration": "{FUTURE}", "conditions": [["content-length-range", -1, 0]]}}"#
                ),
                "Invalid Policy: Invalid content-length-range: bounds must not be negative.",
            ),
            (
                &format!(
                    r#"{{"expiration": "{FUTURE}", "conditions": [["matches", "$key", "x"]]}}"#
                ),
                "Invalid Policy: Invalid Condition: unknown operation 'matches'.",
            ),
            (
                &format!(r#"{{"expiration": "{FUTURE}", "conditions": [[]]}}"#),
                "Invalid Policy: Invalid Condition: missing operation identifier.",
            ),
            (
                &format!(r#"{{"expiration": "{FUTURE}", "conditions": [7]}}"#),
                "Invalid Policy: Invalid condition test: must be a List or Object.",
            ),
        ];
        for (doc, want) in cases {
            let encoded = if *doc == "not base64 !!" {
                doc.to_string()
            } else {
                b64(doc)
            };
            assert_eq!(parse(&encoded).unwrap_err(), *want, "{doc}");
        }
    }

    #[test]
    fn content_length_range_quirks() {
        // String bounds work; a non-numeric one fails the condition, not the document.
        let doc = format!(
            r#"{{"expiration": "{FUTURE}", "conditions": [["content-length-range", "5", "10"]]}}"#
        );
        assert_eq!(parse(&b64(&doc)).unwrap().size_range(), Some((5, 10)));
        let doc = format!(
            r#"{{"expiration": "{FUTURE}", "conditions": [["content-length-range", "test", "10"]]}}"#
        );
        let p = parse(&b64(&doc)).unwrap();
        assert_eq!(
            p.check_fields(0, "b", &[]).unwrap_err().message(),
            r#"Invalid according to Policy: Policy Condition failed: ["content-length-range", "test", "10"]"#
        );
    }

    #[test]
    fn expiration_forms() {
        assert_eq!(parse_expiration("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_expiration("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_expiration("1970-01-01T00:00:01.123456Z"), Some(1123));
        assert_eq!(parse_expiration("1970-01-01T00:00:01+02:00"), None);
        assert_eq!(parse_expiration("1970-13-01T00:00:01Z"), None);
        assert_eq!(parse_expiration("1970-01-01T00:00:01.Z"), None);
    }

    #[test]
    fn fuzz_body_on_stable() {
        let valid = format!(
            r#"{{"expiration": "{FUTURE}", "conditions": [{{"bucket": "b"}}, ["starts-with", "$key", "user/"], ["content-length-range", 1, 10], ["eq", "$Content-Type", "x"]]}}"#
        );
        assert!(parse(&b64(&valid)).is_ok());
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..3000 {
            let mut data = valid.as_bytes().to_vec();
            for _ in 0..1 + next() % 4 {
                let pos = (next() as usize) % data.len();
                match next() % 3 {
                    0 => data[pos] = next() as u8,
                    1 => {
                        data.remove(pos);
                    }
                    _ => data.insert(pos, b"{}[]\",:$-0"[(next() % 10) as usize]),
                }
            }
            if i % 3 == 0 {
                data = (0..(next() % 64)).map(|_| next() as u8).collect();
            }
            fuzz_policy(&data);
        }
    }
}
