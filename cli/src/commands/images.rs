//! `forge images`: list the images of the store, as `docker images` (docker
//! 24) does: one row per name, a row with the tag `<none>` per image pulled
//! by digest only, and a `<none>` row per unnamed image. Also
//! contains what the other image commands share: reading an image from the
//! store and printing sizes, ages and tables as Docker does.

use std::collections::HashSet;
use std::io::{self, Write};

use anyhow::Context;
use chrono::{DateTime, FixedOffset, Utc};
use clap::{Args, ValueEnum};
use forge_cache::store::{Store, source_index};
use forge_registry::Reference;
use oci_spec::image::{Descriptor, Digest, ImageManifest};
use serde_json::{Value, json};

use crate::Globals;
use crate::names::split_name;

/// Arguments of `forge images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show only the images of this repository, and only this tag when one
    /// is given (`busybox`, `busybox:1.36`, `localhost:5000/app`). Unnamed
    /// images are left out.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    filter: Option<String>,

    /// Show all images. Accepted for Docker compatibility, and the list is
    /// the same without it: unnamed images (`<none>` rows) are shown
    /// anyway, as `docker images` shows dangling images, and the store
    /// keeps no intermediate images.
    #[arg(short = 'a', long = "all")]
    all: bool,

    /// Show the manifest digest of each image.
    #[arg(long)]
    digests: bool,

    /// Print only image ids, each once.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,

    /// Print full image ids (`sha256:` and 64 hex digits) instead of 12
    /// hex digits.
    #[arg(long)]
    no_trunc: bool,

    /// Output format: `table` aligns columns under a header; `json` prints
    /// one JSON object per image and line, with the keys of
    /// `docker images --format json`.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

/// Output formats of the listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ListFormat {
    /// Aligned columns under a header.
    Table,
    /// One JSON object per line.
    Json,
}

/// One row of the listing: a name and the image it points at. An unnamed
/// image has an empty repository and tag, shown as `<none>`, and an image
/// pulled by digest has an empty tag.
struct Row {
    repository: String,
    tag: String,
    /// The digest shown: the multi-platform index the image was pulled
    /// from, as docker shows the repository digest, else the manifest.
    digest: Digest,
    image: ImageInfo,
}

/// Runs `forge images`.
pub fn run(globals: &Globals, args: &ImagesArgs) -> anyhow::Result<()> {
    let _ = args.all;
    let store = globals.open_store()?;
    let filter = args.filter.as_deref().map(NameFilter::parse).transpose()?;

    let mut rows = Vec::new();
    for (name, descriptor) in store.list_names()? {
        let (repository, tag) = split_name(&name);
        if let Some(filter) = &filter
            && !filter.matches(repository, tag, descriptor.digest())
        {
            continue;
        }
        match read_image(&store, &descriptor) {
            Ok(image) => rows.push(Row {
                repository: repository.to_string(),
                tag: tag.to_string(),
                digest: listed_digest(&descriptor),
                image,
            }),
            Err(error) => warn_unreadable(&name, &error),
        }
    }
    // A tag of the same repository already lists an image pulled by digest.
    for (repository, descriptor) in store.list_digest_references()? {
        let tagged = rows.iter().any(|row| {
            row.repository == repository && row.image.descriptor.digest() == descriptor.digest()
        });
        if tagged {
            continue;
        }
        if let Some(filter) = &filter
            && !filter.matches(&repository, "", descriptor.digest())
        {
            continue;
        }
        match read_image(&store, &descriptor) {
            Ok(image) => rows.push(Row {
                repository,
                tag: String::new(),
                digest: listed_digest(&descriptor),
                image,
            }),
            Err(error) => {
                warn_unreadable(&format!("{repository}@{}", descriptor.digest()), &error);
            }
        }
    }
    // A filter names a repository, which unnamed images do not have.
    if filter.is_none() {
        for descriptor in store.list_unnamed()? {
            match read_image(&store, &descriptor) {
                Ok(image) => rows.push(Row {
                    repository: String::new(),
                    tag: String::new(),
                    digest: listed_digest(&descriptor),
                    image,
                }),
                Err(error) => {
                    warn_unreadable(&format!("unnamed image {}", descriptor.digest()), &error);
                }
            }
        }
    }

    // Newest first, as Docker lists them; names, then digests break ties.
    rows.sort_by(|left, right| {
        right
            .image
            .created()
            .cmp(&left.image.created())
            .then_with(|| left.repository.cmp(&right.repository))
            .then_with(|| left.tag.cmp(&right.tag))
            .then_with(|| {
                let digest = |row: &Row| row.image.descriptor.digest().to_string();
                digest(left).cmp(&digest(right))
            })
    });

    let mut out = io::stdout().lock();
    if args.quiet {
        let mut seen = HashSet::new();
        for row in &rows {
            let id = format_id(&row.image.id, args.no_trunc);
            if seen.insert(id.clone()) {
                writeln!(out, "{id}")?;
            }
        }
        return Ok(out.flush()?);
    }

    let now = Utc::now();
    match args.format {
        ListFormat::Json => {
            for row in &rows {
                writeln!(out, "{}", json_row(row, args.no_trunc, now))?;
            }
        }
        ListFormat::Table => {
            let mut table = vec![header(args.digests)];
            for row in &rows {
                let mut cells = vec![or_none(&row.repository), or_none(&row.tag)];
                if args.digests {
                    cells.push(row.digest.to_string());
                }
                cells.push(format_id(&row.image.id, args.no_trunc));
                cells.push(row.image.created_since(now));
                cells.push(human_size(row.image.size));
                table.push(cells);
            }
            write_table(&mut out, &table)?;
        }
    }
    Ok(out.flush()?)
}

fn header(digests: bool) -> Vec<String> {
    let mut cells = vec!["REPOSITORY", "TAG"];
    if digests {
        cells.push("DIGEST");
    }
    cells.extend(["IMAGE ID", "CREATED", "SIZE"]);
    cells.into_iter().map(str::to_string).collect()
}

fn json_row(row: &Row, no_trunc: bool, now: DateTime<Utc>) -> Value {
    let size = human_size(row.image.size);
    json!({
        "Containers": "N/A",
        "CreatedAt": row.image.created().map(format_created_at).unwrap_or_else(|| "N/A".into()),
        "CreatedSince": row.image.created_since(now),
        "Digest": row.digest.to_string(),
        "ID": format_id(&row.image.id, no_trunc),
        "Repository": or_none(&row.repository),
        "SharedSize": "N/A",
        "Size": size,
        "Tag": or_none(&row.tag),
        "UniqueSize": "N/A",
        "VirtualSize": size,
    })
}

/// Returns the digest to list for an `index.json` entry: the index it was
/// picked from when the entry records one, else its own.
fn listed_digest(descriptor: &Descriptor) -> Digest {
    source_index(descriptor).unwrap_or_else(|| descriptor.digest().clone())
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        "<none>".to_string()
    } else {
        text.to_string()
    }
}

/// The positional filter of `forge images`: a repository, optionally with
/// a tag or a digest.
#[derive(Debug)]
struct NameFilter {
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl NameFilter {
    fn parse(text: &str) -> anyhow::Result<NameFilter> {
        let reference: Reference = text
            .parse()
            .with_context(|| format!("invalid image filter `{text}`; give REPOSITORY[:TAG]"))?;

        // The reference adds `latest` to a bare repository, so whether a tag
        // was typed is read from the text before any digest.
        let typed_name = text.split('@').next().unwrap_or(text);
        let typed_tag = !split_name(typed_name).1.is_empty();
        let repository = Reference::from_parts(
            reference.registry(),
            reference.repository(),
            Some("latest"),
            None,
        )?
        .familiar();
        Ok(NameFilter {
            repository: split_name(&repository).0.to_string(),
            tag: reference.tag().filter(|_| typed_tag).map(str::to_string),
            digest: reference.digest().cloned(),
        })
    }

    fn matches(&self, repository: &str, tag: &str, digest: &Digest) -> bool {
        repository == self.repository
            && self.tag.as_deref().is_none_or(|wanted| wanted == tag)
            && self.digest.as_ref().is_none_or(|wanted| wanted == digest)
    }
}

/// Prints a warning for a name whose image cannot be read; the listing goes
/// on without it.
#[allow(clippy::print_stderr)]
pub(crate) fn warn_unreadable(name: &str, error: &anyhow::Error) {
    eprintln!(
        "warning: skipping {name}: {error:#}; run `forge store check` to find damaged images"
    );
}

/// An image read from the store: the descriptor a name points at, the
/// manifest chosen for this machine's platform and the image config.
#[derive(Debug)]
pub(crate) struct ImageInfo {
    /// The manifest or index descriptor from `index.json`.
    pub descriptor: Descriptor,
    /// The index document, when the descriptor is an index.
    pub index: Option<Value>,
    /// The digest of the chosen image manifest.
    pub manifest_digest: Digest,
    /// The chosen image manifest as stored.
    pub manifest_document: Value,
    /// The image config as stored.
    pub config: Value,
    /// The image id as Docker shows it: the config digest, or the index
    /// digest for an index.
    pub id: Digest,
    /// The uncompressed size of each layer of the manifest in bytes, in
    /// manifest order (see [`Store::layer_size`]).
    pub layer_sizes: Vec<u64>,
    /// The sum of `layer_sizes`, shown where Docker shows the size of the
    /// image's file system.
    pub size: u64,
}

impl ImageInfo {
    /// Returns the config's `created` time, if it has a valid one.
    pub fn created(&self) -> Option<DateTime<FixedOffset>> {
        self.config
            .get("created")
            .and_then(Value::as_str)
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
    }

    /// Returns the age of the image as Docker prints it ("3 minutes ago"),
    /// or `N/A` without a creation time.
    pub fn created_since(&self, now: DateTime<Utc>) -> String {
        match self.created() {
            Some(created) => time_ago(created, now),
            None => "N/A".to_string(),
        }
    }

    /// Returns the config's `history`, or an empty list.
    pub fn history(&self) -> &[Value] {
        self.config
            .get("history")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

/// Reads the image that `descriptor` points at. For an index, the manifest
/// for this machine's platform is chosen, else the first one.
///
/// # Errors
/// When a document is missing, cannot be parsed, or an index lists no
/// image manifest.
pub(crate) fn read_image(store: &Store, descriptor: &Descriptor) -> anyhow::Result<ImageInfo> {
    let top: Value = store.get_json(descriptor.digest())?;

    let (index, manifest_digest, manifest_document) = if top.get("manifests").is_some() {
        let digest = pick_platform_manifest(&top).with_context(|| {
            format!(
                "image index {} lists no image manifest",
                descriptor.digest()
            )
        })?;
        let manifest: Value = store.get_json(&digest)?;
        (Some(top), digest, manifest)
    } else {
        (None, descriptor.digest().clone(), top)
    };

    let manifest: ImageManifest = serde_json::from_value(manifest_document.clone())
        .with_context(|| format!("manifest {manifest_digest} is not an image manifest"))?;
    let config: Value = store.get_json(manifest.config().digest())?;
    let id = store.image_id(descriptor)?;
    let layer_sizes = uncompressed_layer_sizes(store, &manifest, &config)?;
    let size = layer_sizes.iter().sum();

    Ok(ImageInfo {
        descriptor: descriptor.clone(),
        index,
        manifest_digest,
        manifest_document,
        config,
        id,
        layer_sizes,
        size,
    })
}

/// Returns the uncompressed size of each layer of `manifest`, which pairs
/// in order with the diff ids in the `rootfs` of `config`. A size that the
/// store has not recorded yet is measured from the layer blob once.
fn uncompressed_layer_sizes(
    store: &Store,
    manifest: &ImageManifest,
    config: &Value,
) -> anyhow::Result<Vec<u64>> {
    let config_digest = manifest.config().digest();
    let diff_ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .with_context(|| format!("config {config_digest} has no rootfs.diff_ids list"))?;
    let layers = manifest.layers();
    if diff_ids.len() != layers.len() {
        anyhow::bail!(
            "config {config_digest} lists {} diff ids, but its manifest lists {} layers",
            diff_ids.len(),
            layers.len()
        );
    }

    let mut sizes = Vec::with_capacity(layers.len());
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let diff_id: Digest = diff_id
            .as_str()
            .and_then(|text| text.parse().ok())
            .with_context(|| format!("config {config_digest} has an invalid diff id {diff_id}"))?;
        let size = store.layer_size(layer, &diff_id).with_context(|| {
            format!(
                "cannot measure the uncompressed size of layer {}",
                layer.digest()
            )
        })?;
        sizes.push(size);
    }
    Ok(sizes)
}

/// Picks the manifest of an index for this machine's platform, else the
/// first manifest.
fn pick_platform_manifest(index: &Value) -> Option<Digest> {
    let manifests = index.get("manifests")?.as_array()?;
    let architecture = host_architecture();
    let digest_of =
        |entry: &Value| -> Option<Digest> { entry.get("digest")?.as_str()?.parse().ok() };

    let for_host = manifests.iter().find(|entry| {
        let platform = entry.get("platform");
        let field = |name: &str| {
            platform
                .and_then(|platform| platform.get(name))
                .and_then(Value::as_str)
        };
        field("os") == Some("linux") && field("architecture") == Some(architecture)
    });
    for_host
        .and_then(digest_of)
        .or_else(|| manifests.iter().find_map(digest_of))
}

/// Returns this machine's architecture in OCI terms.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Formats an image id: 12 hex digits, or the whole digest with
/// `no_trunc`.
pub(crate) fn format_id(id: &Digest, no_trunc: bool) -> String {
    if no_trunc {
        return id.to_string();
    }
    let hex = id.digest();
    hex.get(..12).unwrap_or(hex).to_string()
}

/// Formats a creation time as Docker's `CreatedAt`:
/// `2024-01-02 15:04:05 +0000 UTC`.
pub(crate) fn format_created_at(created: DateTime<FixedOffset>) -> String {
    created
        .with_timezone(&Utc)
        .format("%Y-%m-%d %H:%M:%S %z UTC")
        .to_string()
}

/// Formats a byte count as Docker does: decimal units (1 kB = 1000 B) with
/// three significant digits, such as `4.19MB`, `72.8MB` or `0B`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }

    // Rounding to three digits may reach 1000, which reads as the next unit.
    let mut digits = three_significant_digits(value);
    if digits == "1000" && unit + 1 < UNITS.len() {
        digits = "1".to_string();
        unit += 1;
    }
    format!("{digits}{}", UNITS[unit])
}

/// Formats `value` (at least 0 and below 1000) with three significant
/// digits and no trailing zeros.
fn three_significant_digits(value: f64) -> String {
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Formats the time since `then` as Docker does: "Less than a second ago",
/// "5 seconds ago", "About a minute ago", "3 minutes ago", "About an hour
/// ago", "5 hours ago", "3 days ago", "2 weeks ago", "4 months ago",
/// "2 years ago". A time in the future counts as now.
pub(crate) fn time_ago(then: DateTime<FixedOffset>, now: DateTime<Utc>) -> String {
    let seconds = (now.timestamp() - then.timestamp()).max(0);
    let minutes = seconds / 60;
    // Hours round to the nearest hour, so 90 minutes read as 2 hours.
    let hours = (seconds + 1800) / 3600;

    let text = if seconds < 1 {
        "Less than a second".to_string()
    } else if seconds == 1 {
        "1 second".to_string()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".to_string()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".to_string()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    };
    format!("{text} ago")
}

/// Writes rows as columns separated by at least three spaces, each column
/// at least 10 characters wide, as Docker's tables are. The last column is
/// not padded.
pub(crate) fn write_table(out: &mut impl Write, rows: &[Vec<String>]) -> io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            let widest = rows
                .iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0);
            (widest + 3).max(10)
        })
        .collect();

    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if column + 1 < row.len() {
                let width = widths.get(column).copied().unwrap_or(0);
                let padding = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', padding));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ago(seconds: i64) -> String {
        let now = Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap();
        let then = (now - chrono::Duration::seconds(seconds)).fixed_offset();
        time_ago(then, now)
    }

    #[test]
    fn human_size_uses_decimal_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1500), "1.5kB");
        assert_eq!(human_size(4_194_304), "4.19MB");
        assert_eq!(human_size(72_800_000), "72.8MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_240_000_000), "1.24GB");
    }

    #[test]
    fn human_size_rounds_up_to_next_unit() {
        assert_eq!(human_size(999_999), "1MB");
    }

    #[test]
    fn time_ago_under_a_minute() {
        assert_eq!(ago(0), "Less than a second ago");
        assert_eq!(ago(1), "1 second ago");
        assert_eq!(ago(42), "42 seconds ago");
    }

    #[test]
    fn time_ago_minutes_and_hours() {
        assert_eq!(ago(60), "About a minute ago");
        assert_eq!(ago(3 * 60), "3 minutes ago");
        assert_eq!(ago(3600), "About an hour ago");
        assert_eq!(ago(90 * 60), "2 hours ago");
        assert_eq!(ago(47 * 3600), "47 hours ago");
    }

    #[test]
    fn time_ago_days_to_years() {
        assert_eq!(ago(3 * 86_400), "3 days ago");
        assert_eq!(ago(15 * 86_400), "2 weeks ago");
        assert_eq!(ago(120 * 86_400), "4 months ago");
        assert_eq!(ago(3 * 365 * 86_400), "3 years ago");
    }

    #[test]
    fn time_ago_future_is_now() {
        assert_eq!(ago(-30), "Less than a second ago");
    }

    #[test]
    fn table_pads_columns() {
        let rows = vec![
            vec![
                "REPOSITORY".to_string(),
                "TAG".to_string(),
                "SIZE".to_string(),
            ],
            vec![
                "busybox".to_string(),
                "latest".to_string(),
                "1MB".to_string(),
            ],
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "REPOSITORY   TAG       SIZE\nbusybox      latest    1MB\n"
        );
    }

    #[test]
    fn filter_without_tag_matches_every_tag() {
        let filter = NameFilter::parse("docker.io/library/busybox").unwrap();
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert!(filter.matches("busybox", "latest", &digest));
        assert!(filter.matches("busybox", "1.36", &digest));
        assert!(!filter.matches("other", "latest", &digest));
    }

    #[test]
    fn filter_with_tag_matches_that_tag() {
        let filter = NameFilter::parse("localhost:5000/app:v1").unwrap();
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert!(filter.matches("localhost:5000/app", "v1", &digest));
        assert!(!filter.matches("localhost:5000/app", "v2", &digest));
    }

    #[test]
    fn format_id_truncates() {
        let digest: Digest = format!("sha256:{}", "0123456789ab".repeat(5) + "cdef")
            .parse()
            .unwrap();
        assert_eq!(format_id(&digest, false), "0123456789ab");
        assert_eq!(format_id(&digest, true), digest.to_string());
    }
}
