//! Authentication challenges (`WWW-Authenticate`) and bearer tokens.

use std::fmt;
use std::time::{Duration, Instant};

/// The authentication scheme a registry requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// No authentication, because `/v2/` returned 200.
    None,
    /// HTTP Basic authentication on every request.
    Basic,
    /// A token service at `realm` hands out bearer tokens.
    Bearer {
        /// The token service URL.
        realm: String,
        /// The `service` parameter to send, if the registry named one.
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value. Bearer wins over Basic when
/// both are offered; `None` means the header offers neither.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut basic = false;
    let mut bearer = None;
    for (scheme, params) in split_challenges(header) {
        if scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let realm = params.iter().find(|(k, _)| k.eq_ignore_ascii_case("realm"));
            let service = params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("service"));
            if let Some((_, realm)) = realm {
                bearer = Some(Challenge::Bearer {
                    realm: realm.clone(),
                    service: service.map(|(_, s)| s.clone()),
                });
            }
        }
    }
    bearer.or(basic.then_some(Challenge::Basic))
}

type Params = Vec<(String, String)>;

/// Splits `Scheme k=v, k="v", Other k=v` into schemes with parameters.
fn split_challenges(header: &str) -> Vec<(String, Params)> {
    let mut challenges: Vec<(String, Params)> = Vec::new();
    let chars: Vec<char> = header.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        // Skip separators.
        while i < chars.len() && (chars[i] == ',' || chars[i].is_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' && chars[i] != ',' {
            i += 1;
        }
        let token: String = chars[start..i].iter().collect();
        if token.is_empty() {
            break;
        }
        if i < chars.len() && chars[i] == '=' {
            // A parameter of the current challenge.
            i += 1;
            let value = if i < chars.len() && chars[i] == '"' {
                i += 1;
                let mut value = String::new();
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1;
                value
            } else {
                let start = i;
                while i < chars.len() && chars[i] != ',' && !chars[i].is_whitespace() {
                    i += 1;
                }
                chars[start..i].iter().collect()
            };
            if let Some((_, params)) = challenges.last_mut() {
                params.push((token, value));
            }
        } else {
            challenges.push((token, Vec::new()));
        }
    }
    challenges
}

/// A bearer token with its expiry. `Debug` hides the token.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) expires: Instant,
}

impl Token {
    /// Builds a token that expires `expires_in` seconds from now, less a
    /// margin for the time the request takes. The token specification
    /// makes 60 seconds the default and minimum.
    pub(crate) fn new(value: String, expires_in: Option<u64>) -> Token {
        let seconds = expires_in.unwrap_or(60).max(60);
        let lifetime = Duration::from_secs(seconds).saturating_sub(Duration::from_secs(10));
        Token {
            value,
            expires: Instant::now() + lifetime,
        }
    }

    pub(crate) fn is_fresh(&self) -> bool {
        Instant::now() < self.expires
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// The token service's JSON response.
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub(crate) token: Option<String>,
    #[serde(default)]
    pub(crate) access_token: Option<String>,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_parses() {
        let header = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#;
        let expected = Challenge::Bearer {
            realm: "https://auth.example/token".into(),
            service: Some("registry.example".into()),
        };
        assert_eq!(parse_challenge(header), Some(expected));
    }

    #[test]
    fn basic_challenge_parses() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
    }

    #[test]
    fn bearer_wins_over_basic() {
        let header = r#"Basic realm="x", Bearer realm="https://t/token""#;
        let expected = Challenge::Bearer {
            realm: "https://t/token".into(),
            service: None,
        };
        assert_eq!(parse_challenge(header), Some(expected));
    }

    #[test]
    fn unknown_challenge_is_none() {
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(""), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
    }

    #[test]
    fn quoted_values_unescape() {
        let header = r#"Bearer realm="https://t/a\"b", service=plain"#;
        let expected = Challenge::Bearer {
            realm: "https://t/a\"b".into(),
            service: Some("plain".into()),
        };
        assert_eq!(parse_challenge(header), Some(expected));
    }

    #[test]
    fn token_debug_hides_value() {
        let token = Token::new("secret-token".into(), Some(300));
        assert!(!format!("{token:?}").contains("secret-token"));
        assert!(token.is_fresh());
    }
}
