//! Image references with Docker's normalisation rules.
//!
//! A reference is `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`. The first path
//! component is a registry host when it contains a `.` or a `:`, when it is
//! `localhost`, or when it contains an upper-case letter. Otherwise the host
//! is `docker.io`. As in Docker, `Foo/bar` is the repository `bar` on the
//! host `Foo`. A one-component repository on `docker.io` lives under
//! `library/`. A reference with neither tag nor digest gets the tag `latest`.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;

/// The host that Docker Hub references name.
pub const DOCKER_HUB: &str = "docker.io";

/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";

/// Maximum length of a name (host and repository path), as Docker enforces.
pub const NAME_MAX_LEN: usize = 255;

/// Maximum length of a tag.
pub const TAG_MAX_LEN: usize = 128;

/// Errors of parsing or building a [`Reference`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The input was empty.
    #[error("invalid reference: the name is empty; expected NAME[:TAG][@DIGEST]")]
    Empty,

    /// The tag breaks the tag rules.
    #[error("invalid tag `{tag}`: {reason}")]
    InvalidTag {
        /// The tag as written.
        tag: String,
        /// The rule it breaks.
        reason: &'static str,
    },

    /// The digest is malformed or uses an unsupported algorithm.
    #[error("invalid digest `{digest}`: {reason}")]
    InvalidDigest {
        /// The digest as written.
        digest: String,
        /// The rule it breaks.
        reason: String,
    },

    /// The repository path contains upper-case letters.
    #[error("repository name must be lowercase: `{repository}`")]
    Uppercase {
        /// The repository path as written.
        repository: String,
    },

    /// A component of the repository path breaks the component rules.
    #[error(
        "invalid repository name component `{component}` in `{repository}`: components are \
         lower-case letters and digits, joined by `.`, `_`, `__` or dashes, and may not start \
         or end with a separator"
    )]
    InvalidComponent {
        /// The offending component (empty for `a//b` or a trailing `/`).
        component: String,
        /// The repository path it belongs to.
        repository: String,
    },

    /// The registry host or port is malformed.
    #[error("invalid registry host `{host}`: {reason}")]
    InvalidHost {
        /// The host as written, with its port.
        host: String,
        /// The rule it breaks.
        reason: &'static str,
    },

    /// The name is longer than [`NAME_MAX_LEN`].
    #[error("repository name `{name}` is {len} characters long; the maximum is {NAME_MAX_LEN}")]
    NameTooLong {
        /// The name as written.
        name: String,
        /// Its length in bytes.
        len: usize,
    },

    /// The whole reference is 64 hex characters, which Docker reserves for image IDs.
    #[error(
        "invalid repository name `{0}`: 64 hexadecimal characters are an image ID, not a name; \
         write `sha256:{0}` for a digest or pick another name"
    )]
    ImageId(String),
}

/// A validated, normalised image reference.
///
/// Invariants: `registry` is a valid host, `repository` is a valid path of
/// lower-case components, at least one of `tag` and `digest` is set, and the
/// digest's algorithm is sha256, sha384 or sha512 with the matching number
/// of lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Builds a reference from validated parts. `tag` defaults to `latest`
    /// when both `tag` and `digest` are `None`.
    ///
    /// # Errors
    ///
    /// Returns the same errors as parsing for a bad host, path or tag.
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Self, ReferenceError> {
        validate_host(registry)?;
        validate_repository(repository)?;
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        if let Some(digest) = &digest {
            validate_digest(digest.as_ref())?;
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(Reference {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }

    /// Returns the registry host as named, with its port (`docker.io`,
    /// `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Returns the host that serves the registry API: `registry-1.docker.io`
    /// for Docker Hub, the registry host otherwise.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Returns the repository path (`library/app`, `name/app`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Returns the tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Returns the digest, if the reference has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Returns the manifest reference for the API path: the digest when
    /// there is one, otherwise the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            // Unreachable by the type's invariant; `latest` is what the
            // constructor would have chosen.
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// Returns the same repository with `digest` in place of tag and digest.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// Returns the same repository with `tag` in place of tag and digest.
    ///
    /// # Errors
    ///
    /// Returns [`ReferenceError::InvalidTag`] when `tag` breaks the tag rules.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        validate_tag(tag)?;
        Ok(Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        })
    }

    /// Formats the short form that Docker prints: `docker.io/` and `library/` are left out
    /// (`app:latest`, `name/app:latest`, `localhost:5000/app:latest`).
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.repository.clone(),
            }
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        format!("{name}{}", self.suffix())
    }

    fn suffix(&self) -> String {
        let mut suffix = String::new();
        if let Some(tag) = &self.tag {
            suffix.push(':');
            suffix.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            suffix.push('@');
            suffix.push_str(digest.as_ref());
        }
        suffix
    }
}

impl fmt::Display for Reference {
    /// Writes the full form, `docker.io/library/app:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.registry, self.repository, self.suffix())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.len() == 64 && input.bytes().all(is_lower_hex) {
            return Err(ReferenceError::ImageId(input.to_owned()));
        }

        // The digest follows the first `@`.
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
            None => (input, None),
        };

        // A tag is a `:` after the last `/`; a `:` before it is a port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if name.len() > NAME_MAX_LEN {
            return Err(ReferenceError::NameTooLong {
                name: name.to_owned(),
                len: name.len(),
            });
        }

        // Validate the path as written so that errors quote the user's text,
        // not the `library/` form.
        let (registry, path) = split_registry(name);
        validate_repository(path)?;
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        Reference::from_parts(registry, &repository, tag, digest)
    }
}

impl TryFrom<&str> for Reference {
    type Error = ReferenceError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// Splits a name into registry host and repository path, mapping
/// `index.docker.io` to `docker.io`.
fn split_registry(name: &str) -> (&str, &str) {
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if is_host_component(first) => (first, rest),
        _ => (DOCKER_HUB, name),
    };
    if registry == "index.docker.io" {
        return (DOCKER_HUB, path);
    }
    (registry, path)
}

fn is_host_component(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

/// Checks `[\w][\w.-]{0,127}`.
pub(crate) fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let invalid = |reason| ReferenceError::InvalidTag {
        tag: tag.to_owned(),
        reason,
    };
    let Some(first) = tag.chars().next() else {
        return Err(invalid("the tag is empty; remove the `:` or add a tag"));
    };
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(invalid("a tag must start with a letter, a digit or `_`"));
    }
    if !tag.chars().all(is_tag_char) {
        return Err(invalid(
            "a tag may contain only letters, digits, `_`, `.` and `-`",
        ));
    }
    if tag.len() > TAG_MAX_LEN {
        return Err(invalid("a tag may be at most 128 characters long"));
    }
    Ok(())
}

fn parse_digest(digest: &str) -> Result<Digest, ReferenceError> {
    validate_digest(digest)?;
    Digest::from_str(digest).map_err(|source| ReferenceError::InvalidDigest {
        digest: digest.to_owned(),
        reason: source.to_string(),
    })
}

/// Checks `ALGORITHM:HEX` for sha256, sha384 and sha512.
pub(crate) fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    let invalid = |reason: String| ReferenceError::InvalidDigest {
        digest: digest.to_owned(),
        reason,
    };
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(invalid(
            "expected ALGORITHM:HEX such as `sha256:` followed by 64 hex digits".to_owned(),
        ));
    };
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(invalid(format!(
                "unsupported algorithm `{algorithm}`; use sha256, sha384 or sha512"
            )));
        }
    };
    if hex.len() != expected_len {
        return Err(invalid(format!(
            "a {algorithm} digest has {expected_len} hex digits, this one has {}",
            hex.len()
        )));
    }
    if !hex.bytes().all(is_lower_hex) {
        return Err(invalid(
            "the digest may contain only lower-case hex digits `0-9a-f`".to_owned(),
        ));
    }
    Ok(())
}

/// Checks `HOST[:PORT]` where HOST is a DNS name, an IPv4 address or a
/// bracketed IPv6 address.
pub(crate) fn validate_host(host: &str) -> Result<(), ReferenceError> {
    let invalid = |reason| ReferenceError::InvalidHost {
        host: host.to_owned(),
        reason,
    };
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }

    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return Err(invalid("an IPv6 address needs a closing `]`"));
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid(
                "the text between `[` and `]` is not an IPv6 address",
            ));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(invalid("expected `:PORT` after the IPv6 address")),
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };

    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5)
    {
        return Err(invalid("the port must be 1 to 5 digits"));
    }
    if let Some(name) = name {
        for label in name.split('.') {
            let bytes = label.as_bytes();
            let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
                return Err(invalid("a host name may not have empty labels"));
            };
            if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
                return Err(invalid(
                    "host name labels must start and end with a letter or digit",
                ));
            }
            if !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            {
                return Err(invalid(
                    "host name labels may contain only letters, digits and `-`",
                ));
            }
        }
    }
    Ok(())
}

/// Checks a repository path: `/`-separated components of the form
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub(crate) fn validate_repository(repository: &str) -> Result<(), ReferenceError> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase {
            repository: repository.to_owned(),
        });
    }
    if repository.len() > NAME_MAX_LEN {
        return Err(ReferenceError::NameTooLong {
            name: repository.to_owned(),
            len: repository.len(),
        });
    }
    for component in repository.split('/') {
        if !is_valid_component(component) {
            return Err(ReferenceError::InvalidComponent {
                component: component.to_owned(),
                repository: repository.to_owned(),
            });
        }
    }
    Ok(())
}

fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !is_alnum(first) || !is_alnum(last) {
        return false;
    }

    // Walk runs of separators between alphanumeric runs: a run is one `.`,
    // one `_`, exactly `__`, or any number of `-`.
    let mut run_start = None;
    for (i, &b) in bytes.iter().enumerate() {
        if is_alnum(b) {
            if let Some(start) = run_start.take() {
                let run = &bytes[start..i];
                let valid = matches!(run, b"." | b"_" | b"__") || run.iter().all(|&c| c == b'-');
                if !valid {
                    return false;
                }
            }
        } else if matches!(b, b'.' | b'_' | b'-') {
            run_start.get_or_insert(i);
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn digest() -> String {
        format!("sha256:{HEX}")
    }

    /// (input, full form, familiar form, registry, repository, tag, has digest)
    type GoodCase = (
        String,
        String,
        String,
        &'static str,
        &'static str,
        Option<&'static str>,
        bool,
    );

    fn good_cases() -> Vec<GoodCase> {
        let d = digest();
        vec![
            (
                "app".into(),
                "docker.io/library/app:latest".into(),
                "app:latest".into(),
                "docker.io",
                "library/app",
                Some("latest"),
                false,
            ),
            (
                "app:1.0".into(),
                "docker.io/library/app:1.0".into(),
                "app:1.0".into(),
                "docker.io",
                "library/app",
                Some("1.0"),
                false,
            ),
            (
                "name/app".into(),
                "docker.io/name/app:latest".into(),
                "name/app:latest".into(),
                "docker.io",
                "name/app",
                Some("latest"),
                false,
            ),
            (
                "library/app".into(),
                "docker.io/library/app:latest".into(),
                "app:latest".into(),
                "docker.io",
                "library/app",
                Some("latest"),
                false,
            ),
            (
                "docker.io/app".into(),
                "docker.io/library/app:latest".into(),
                "app:latest".into(),
                "docker.io",
                "library/app",
                Some("latest"),
                false,
            ),
            (
                "index.docker.io/name/app".into(),
                "docker.io/name/app:latest".into(),
                "name/app:latest".into(),
                "docker.io",
                "name/app",
                Some("latest"),
                false,
            ),
            (
                "docker.io/library/a/b".into(),
                "docker.io/library/a/b:latest".into(),
                "library/a/b:latest".into(),
                "docker.io",
                "library/a/b",
                Some("latest"),
                false,
            ),
            (
                "localhost/app".into(),
                "localhost/app:latest".into(),
                "localhost/app:latest".into(),
                "localhost",
                "app",
                Some("latest"),
                false,
            ),
            (
                "localhost:5000/app".into(),
                "localhost:5000/app:latest".into(),
                "localhost:5000/app:latest".into(),
                "localhost:5000",
                "app",
                Some("latest"),
                false,
            ),
            (
                "127.0.0.1:5000/a/b:v1".into(),
                "127.0.0.1:5000/a/b:v1".into(),
                "127.0.0.1:5000/a/b:v1".into(),
                "127.0.0.1:5000",
                "a/b",
                Some("v1"),
                false,
            ),
            (
                "[::1]:5000/app".into(),
                "[::1]:5000/app:latest".into(),
                "[::1]:5000/app:latest".into(),
                "[::1]:5000",
                "app",
                Some("latest"),
                false,
            ),
            (
                "ghcr.io/o/r/deep/path:t".into(),
                "ghcr.io/o/r/deep/path:t".into(),
                "ghcr.io/o/r/deep/path:t".into(),
                "ghcr.io",
                "o/r/deep/path",
                Some("t"),
                false,
            ),
            (
                "my-host:443/x".into(),
                "my-host:443/x:latest".into(),
                "my-host:443/x:latest".into(),
                "my-host:443",
                "x",
                Some("latest"),
                false,
            ),
            (
                "a.b-c.d/g".into(),
                "a.b-c.d/g:latest".into(),
                "a.b-c.d/g:latest".into(),
                "a.b-c.d",
                "g",
                Some("latest"),
                false,
            ),
            (
                "name/a.b_c__d-e---f".into(),
                "docker.io/name/a.b_c__d-e---f:latest".into(),
                "name/a.b_c__d-e---f:latest".into(),
                "docker.io",
                "name/a.b_c__d-e---f",
                Some("latest"),
                false,
            ),
            (
                format!("app@{d}"),
                format!("docker.io/library/app@{d}"),
                format!("app@{d}"),
                "docker.io",
                "library/app",
                None,
                true,
            ),
            (
                format!("app:v2@{d}"),
                format!("docker.io/library/app:v2@{d}"),
                format!("app:v2@{d}"),
                "docker.io",
                "library/app",
                Some("v2"),
                true,
            ),
            (
                format!("localhost:5000/app@{d}"),
                format!("localhost:5000/app@{d}"),
                format!("localhost:5000/app@{d}"),
                "localhost:5000",
                "app",
                None,
                true,
            ),
            (
                "Foo/bar".into(),
                "Foo/bar:latest".into(),
                "Foo/bar:latest".into(),
                "Foo",
                "bar",
                Some("latest"),
                false,
            ),
            (
                "app:_under".into(),
                "docker.io/library/app:_under".into(),
                "app:_under".into(),
                "docker.io",
                "library/app",
                Some("_under"),
                false,
            ),
            (
                "app:Mixed.Case-1".into(),
                "docker.io/library/app:Mixed.Case-1".into(),
                "app:Mixed.Case-1".into(),
                "docker.io",
                "library/app",
                Some("Mixed.Case-1"),
                false,
            ),
            (
                format!("app:{}", "a".repeat(128)),
                format!("docker.io/library/app:{}", "a".repeat(128)),
                format!("app:{}", "a".repeat(128)),
                "docker.io",
                "library/app",
                None,
                false,
            ),
        ]
    }

    #[test]
    fn parse_good_references() {
        for (input, full, familiar, registry, repository, tag, has_digest) in good_cases() {
            let reference: Reference = match input.parse() {
                Ok(reference) => reference,
                Err(error) => panic!("`{input}` failed to parse: {error}"),
            };
            assert_eq!(reference.to_string(), full, "full form of `{input}`");
            assert_eq!(reference.familiar(), familiar, "familiar form of `{input}`");
            assert_eq!(reference.registry(), registry, "registry of `{input}`");
            assert_eq!(
                reference.repository(),
                repository,
                "repository of `{input}`"
            );
            if let Some(tag) = tag {
                assert_eq!(reference.tag(), Some(tag), "tag of `{input}`");
            }
            assert_eq!(
                reference.digest().is_some(),
                has_digest,
                "digest of `{input}`"
            );
        }
    }

    #[test]
    fn full_form_round_trips() {
        for (input, full, ..) in good_cases() {
            let reparsed: Reference = full.parse().unwrap_or_else(|e| panic!("{full}: {e}"));
            let original: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(reparsed, original, "`{full}` does not round-trip");
        }
    }

    #[test]
    fn parse_bad_references() {
        let d = digest();
        let long_name = format!("a/{}", "b".repeat(300));
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "the name is empty"),
            (":tag".into(), "the name is empty"),
            ("app:".into(), "invalid tag ``"),
            ("app:x!".into(), "invalid tag `x!`"),
            ("app:-x".into(), "invalid tag `-x`: a tag must start"),
            ("app:.x".into(), "invalid tag `.x`"),
            (format!("app:{}", "a".repeat(129)), "at most 128 characters"),
            ("App".into(), "repository name must be lowercase: `App`"),
            (
                "name/App".into(),
                "repository name must be lowercase: `name/App`",
            ),
            (
                "localhost:5000/App".into(),
                "repository name must be lowercase: `App`",
            ),
            ("Foo/Bar".into(), "repository name must be lowercase: `Bar`"),
            ("a//b".into(), "invalid repository name component ``"),
            ("name/app/".into(), "invalid repository name component ``"),
            (
                "name/-app".into(),
                "invalid repository name component `-app`",
            ),
            (
                "name/app-".into(),
                "invalid repository name component `app-`",
            ),
            (
                "name/a..b".into(),
                "invalid repository name component `a..b`",
            ),
            (
                "name/a___b".into(),
                "invalid repository name component `a___b`",
            ),
            (
                "name/a._b".into(),
                "invalid repository name component `a._b`",
            ),
            ("name/a b".into(), "invalid repository name component `a b`"),
            (
                "example.com:port/app".into(),
                "invalid registry host `example.com:port`",
            ),
            (
                "example.com:123456/app".into(),
                "the port must be 1 to 5 digits",
            ),
            ("-bad.com/app".into(), "invalid registry host `-bad.com`"),
            ("bad..com/app".into(), "empty labels"),
            ("[::1/app".into(), "needs a closing `]`"),
            ("[zz]:5000/app".into(), "not an IPv6 address"),
            (
                "app@sha256:abc".into(),
                "a sha256 digest has 64 hex digits, this one has 3",
            ),
            (
                format!("app@sha256:{}", HEX.to_uppercase()),
                "lower-case hex digits",
            ),
            (format!("app@md5:{HEX}"), "unsupported algorithm `md5`"),
            ("app@".into(), "expected ALGORITHM:HEX"),
            (format!("app@{d}@{d}"), "invalid digest"),
            (HEX.into(), "64 hexadecimal characters are an image ID"),
            (long_name, "characters long; the maximum is 255"),
        ];
        for (input, expected) in cases {
            match input.parse::<Reference>() {
                Ok(reference) => panic!("`{input}` parsed as `{reference}`, expected an error"),
                Err(error) => {
                    let message = error.to_string();
                    assert!(
                        message.contains(expected),
                        "`{input}`: message `{message}` lacks `{expected}`"
                    );
                }
            }
        }
    }

    #[test]
    fn api_host_maps_docker_hub() {
        let hub: Reference = "app".parse().unwrap_or_else(|e| panic!("{e}"));
        let local: Reference = "localhost:5000/app"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hub.api_host(), DOCKER_HUB_API);
        assert_eq!(local.api_host(), "localhost:5000");
    }

    #[test]
    fn manifest_reference_prefers_digest() {
        let d = digest();
        let both: Reference = format!("app:v1@{d}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let tag_only: Reference = "app:v1".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(both.manifest_reference(), d);
        assert_eq!(tag_only.manifest_reference(), "v1");
    }

    #[test]
    fn with_tag_and_digest_replace_both() {
        let d: Digest = digest().parse().unwrap_or_else(|e| panic!("{e}"));
        let reference: Reference = "name/app:v1".parse().unwrap_or_else(|e| panic!("{e}"));
        let by_digest = reference.with_digest(d.clone());
        assert_eq!(by_digest.tag(), None);
        assert_eq!(by_digest.digest(), Some(&d));
        let retagged = by_digest.with_tag("v2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(retagged.to_string(), "docker.io/name/app:v2");
        assert!(by_digest.with_tag("bad tag").is_err());
    }
}
