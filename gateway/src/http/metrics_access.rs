//! Who may read `/_strata/metrics`: nobody over plain GET by default (operators read it with a
//! signed `strata admin metrics`), a scraper presenting the configured bearer token, or anyone
//! when the operator says so (`--metrics-public`, e.g. behind a private network).

use http::HeaderMap;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

#[derive(Clone, Default)]
pub enum MetricsAccess {
    /// Only the signed admin verb.
    #[default]
    Closed,
    /// `Authorization: Bearer <token>` (compared in constant time).
    Token(Zeroizing<Vec<u8>>),
    /// Anyone who can reach the listener.
    Public,
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MetricsAccess::Closed => "Closed",
            MetricsAccess::Token(_) => "Token(<redacted>)",
            MetricsAccess::Public => "Public",
        })
    }
}

impl MetricsAccess {
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        match self {
            MetricsAccess::Closed => false,
            MetricsAccess::Public => true,
            MetricsAccess::Token(token) => headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                .is_some_and(|given| bool::from(given.ct_eq(token.as_slice()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_the_exact_token_opens_it() {
        let t = MetricsAccess::Token(Zeroizing::new(b"s3cret-token".to_vec()));
        assert!(t.allows(&with(Some("Bearer s3cret-token"))));
        for bad in [
            None,
            Some("Bearer s3cret-toke"),
            Some("Bearer s3cret-token2"),
            Some("bearer s3cret-token"),
            Some("s3cret-token"),
        ] {
            assert!(!t.allows(&with(bad)), "{bad:?}");
        }
        assert!(!MetricsAccess::Closed.allows(&with(Some("Bearer x"))));
        assert!(MetricsAccess::Public.allows(&with(None)));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }
}
