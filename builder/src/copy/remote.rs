//! ADD of `http://` and `https://` URLs: download, checksum and metadata.

use sha2::{Digest, Sha256, Sha384, Sha512};

use super::CopyError;

/// A downloaded file.
pub(crate) struct Download {
    pub(crate) bytes: Vec<u8>,
    /// The last non-empty segment of the URL path.
    pub(crate) file_name: Option<String>,
    /// Seconds since the epoch from `Last-Modified`.
    pub(crate) mtime: Option<i64>,
    /// `sha256:<hex>` of the content.
    pub(crate) digest: String,
}

/// Checks whether a source names a remote file rather than a context path.
pub(crate) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Checks whether a source names a Git repository: `git://`, `ssh://` and
/// `git@host:path` addresses, and `http(s)://` URLs whose path ends in
/// `.git`. Other `http(s)://` URLs are plain downloads.
pub(crate) fn is_git(source: &str) -> bool {
    source.starts_with("git://")
        || source.starts_with("ssh://")
        || source.starts_with("git@")
        || (is_url(source)
            && source
                .split(['?', '#'])
                .next()
                .is_some_and(|path| path.trim_end_matches('/').ends_with(".git")))
}

/// Downloads `url` and checks it against `checksum` (`sha256:<hex>`,
/// `sha384:<hex>` or `sha512:<hex>`) when one is given.
///
/// NOTE: the whole file is held in memory until the layer is written.
pub(crate) fn download(url: &str, checksum: Option<&str>) -> Result<Download, CopyError> {
    let failed = |reason: String| CopyError::Download {
        url: url.to_string(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|error| failed(error.to_string()))?;
    let file_name = parsed
        .path_segments()
        .and_then(|mut segments| segments.rfind(|segment| !segment.is_empty()))
        .map(str::to_string);

    forge_registry::client::install_tls_provider();
    let client = reqwest::blocking::Client::builder()
        .build()
        .map_err(|error| failed(error.to_string()))?;
    let response = client
        .get(parsed)
        .send()
        .map_err(|error| failed(error.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(format!("the server answered {status}")));
    }
    let mtime = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_http_date);
    let bytes = response
        .bytes()
        .map_err(|error| failed(error.to_string()))?
        .to_vec();

    if let Some(checksum) = checksum {
        let (algorithm, _) = checksum.split_once(':').unwrap_or(("", ""));
        let actual = match algorithm {
            "sha256" => format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            "sha384" => format!("sha384:{}", hex::encode(Sha384::digest(&bytes))),
            "sha512" => format!("sha512:{}", hex::encode(Sha512::digest(&bytes))),
            _ => {
                return Err(CopyError::InvalidChecksum {
                    value: checksum.to_string(),
                });
            }
        };
        if !actual.eq_ignore_ascii_case(checksum) {
            return Err(CopyError::ChecksumMismatch {
                url: url.to_string(),
                expected: checksum.to_string(),
                actual,
            });
        }
    }

    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    Ok(Download {
        bytes,
        file_name,
        mtime,
        digest,
    })
}

/// Parses an HTTP date in the preferred form `Sun, 06 Nov 1994 08:49:37 GMT`
/// to seconds since the epoch. The obsolete forms give `None`.
pub(crate) fn parse_http_date(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace().skip(1);
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let hour: i64 = clock.next()?.parse().ok()?;
    let minute: i64 = clock.next()?.parse().ok()?;
    let second: i64 = clock.next()?.parse().ok()?;
    if parts.next()? != "GMT" {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_parses() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn git_sources_detected() {
        assert!(is_git("https://github.com/a/b.git"));
        assert!(is_git("git@github.com:a/b.git"));
        assert!(!is_git("https://example.com/file.tar.gz"));
        assert!(is_url("http://127.0.0.1:80/x"));
        assert!(!is_url("dir/file"));
    }
}
