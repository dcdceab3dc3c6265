//! A minimal tar writer with PAX extended headers.
//!
//! Every header is a POSIX ustar header without user or group names. A PAX
//! extended header (`x`) comes before an entry whose name or link target is
//! longer than the ustar field or not ASCII, whose size, uid or gid does not
//! fit the octal field, or that carries xattrs (`SCHILY.xattr.NAME`).

use std::io::{self, Write};

use tar::{EntryType, Header};

/// Size of a tar block.
pub(crate) const BLOCK: usize = 512;

/// Largest value of the 12-byte octal size field.
const MAX_OCTAL_SIZE: u64 = 0o77_777_777_777;

/// Largest value of the 8-byte octal uid and gid fields.
const MAX_OCTAL_ID: u64 = 0o7_777_777;

/// Length of the ustar name and link name fields.
const NAME_FIELD: usize = 100;

/// The type and type-specific data of a tar entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Regular { size: u64 },
    Directory,
    Symlink { target: Vec<u8> },
    HardLink { target: Vec<u8> },
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

/// Everything a tar header records about one entry.
#[derive(Debug, Clone)]
pub(crate) struct EntryHeader {
    /// Entry name relative to the layer root, without a leading `./`; a
    /// directory's name ends in `/`.
    pub(crate) name: Vec<u8>,
    pub(crate) kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    /// Seconds since the epoch; negative times are written as 0.
    pub(crate) mtime: i64,
    /// Extended attributes sorted by name.
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Writes tar entries to `inner`; [`TarWriter::finish`] writes the end-of-archive blocks.
pub(crate) struct TarWriter<W: Write> {
    inner: W,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner }
    }

    /// Returns the writer that entry data goes to after [`TarWriter::write_header`].
    pub(crate) fn data_writer(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Writes the PAX header if one is needed, then the entry's ustar header.
    /// A regular file's `size` bytes of data must follow, then [`TarWriter::pad`].
    pub(crate) fn write_header(&mut self, entry: &EntryHeader) -> io::Result<()> {
        let records = pax_records(entry);
        if !records.is_empty() {
            let mut pax = Header::new_ustar();
            set_field(
                &mut pax.as_mut_bytes()[..NAME_FIELD],
                &pax_header_name(&entry.name),
            );
            pax.set_entry_type(EntryType::XHeader);
            pax.set_mode(0o644);
            pax.set_size(records.len() as u64);
            pax.set_cksum();
            self.inner.write_all(pax.as_bytes())?;
            self.inner.write_all(&records)?;
            self.pad(records.len() as u64)?;
        }

        let header = ustar_header(entry)?;
        self.inner.write_all(header.as_bytes())
    }

    /// Pads entry data of `size` bytes to a whole block.
    pub(crate) fn pad(&mut self, size: u64) -> io::Result<()> {
        let remainder = (size % BLOCK as u64) as usize;
        if remainder != 0 {
            self.inner.write_all(&[0u8; BLOCK][remainder..])?;
        }
        Ok(())
    }

    /// Writes the two zero blocks that end an archive and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.inner)
    }
}

fn ustar_header(entry: &EntryHeader) -> io::Result<Header> {
    let mut header = Header::new_ustar();
    set_field(&mut header.as_mut_bytes()[..NAME_FIELD], &entry.name);
    header.set_mode(entry.mode & 0o7777);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(u64::try_from(entry.mtime).unwrap_or(0));
    header.set_size(0);

    match &entry.kind {
        EntryKind::Regular { size } => {
            header.set_entry_type(EntryType::Regular);
            header.set_size(*size);
        }
        EntryKind::Directory => header.set_entry_type(EntryType::Directory),
        EntryKind::Symlink { target } => {
            header.set_entry_type(EntryType::Symlink);
            set_field(&mut header.as_mut_bytes()[157..157 + NAME_FIELD], target);
        }
        EntryKind::HardLink { target } => {
            header.set_entry_type(EntryType::Link);
            set_field(&mut header.as_mut_bytes()[157..157 + NAME_FIELD], target);
        }
        EntryKind::CharDevice { major, minor } => {
            header.set_entry_type(EntryType::Char);
            header.set_device_major(*major)?;
            header.set_device_minor(*minor)?;
        }
        EntryKind::BlockDevice { major, minor } => {
            header.set_entry_type(EntryType::Block);
            header.set_device_major(*major)?;
            header.set_device_minor(*minor)?;
        }
        EntryKind::Fifo => header.set_entry_type(EntryType::Fifo),
    }
    header.set_cksum();
    Ok(header)
}

/// Copies `value` into a fixed-size header field, truncating it and leaving
/// the rest zero. A truncated field is always paired with a PAX record.
fn set_field(field: &mut [u8], value: &[u8]) {
    let length = value.len().min(field.len());
    field[..length].copy_from_slice(&value[..length]);
    field[length..].fill(0);
}

/// Returns whether `value` fits a ustar name field as it is.
fn fits_name_field(value: &[u8]) -> bool {
    value.len() <= NAME_FIELD && value.is_ascii() && !value.contains(&0)
}

/// Builds the PAX records of `entry`, standard keys sorted first and xattrs
/// sorted after them, or nothing when the ustar header contains everything.
fn pax_records(entry: &EntryHeader) -> Vec<u8> {
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut binary = std::str::from_utf8(&entry.name).is_err();

    if !fits_name_field(&entry.name) {
        records.push((b"path".to_vec(), entry.name.clone()));
    }
    match &entry.kind {
        EntryKind::Symlink { target } | EntryKind::HardLink { target }
            if !fits_name_field(target) =>
        {
            records.push((b"linkpath".to_vec(), target.clone()));
            binary |= std::str::from_utf8(target).is_err();
        }
        EntryKind::Regular { size } if *size > MAX_OCTAL_SIZE => {
            records.push((b"size".to_vec(), size.to_string().into_bytes()));
        }
        _ => {}
    }
    if entry.uid > MAX_OCTAL_ID {
        records.push((b"uid".to_vec(), entry.uid.to_string().into_bytes()));
    }
    if entry.gid > MAX_OCTAL_ID {
        records.push((b"gid".to_vec(), entry.gid.to_string().into_bytes()));
    }
    if binary {
        // Names that are not UTF-8 are stored as raw bytes, which POSIX
        // allows when `hdrcharset` is `BINARY`.
        records.push((b"hdrcharset".to_vec(), b"BINARY".to_vec()));
    }
    records.sort();
    // Xattrs go last: readers that split PAX data at newlines, such as the
    // `tar` crate (0.4), stop reading size, uid and gid at the first record
    // they cannot parse, which a binary xattr value with a newline byte is.
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = entry
        .xattrs
        .iter()
        .map(|(name, value)| {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name);
            (key, value.clone())
        })
        .collect();
    xattrs.sort();
    records.extend(xattrs);

    let mut output = Vec::new();
    for (key, value) in records {
        append_record(&mut output, &key, &value);
    }
    output
}

/// Appends one `LENGTH KEY=VALUE\n` record, where LENGTH counts the whole
/// record including its own digits.
fn append_record(output: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut length = base + decimal_digits(base);
    if decimal_digits(length) != decimal_digits(base) {
        length += 1;
    }
    output.extend_from_slice(length.to_string().as_bytes());
    output.push(b' ');
    output.extend_from_slice(key);
    output.push(b'=');
    output.extend_from_slice(value);
    output.push(b'\n');
}

fn decimal_digits(mut value: usize) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

/// Names the PAX header after the entry's last component, kept to printable
/// ASCII, so that tools without PAX support show something recognisable.
fn pax_header_name(entry_name: &[u8]) -> Vec<u8> {
    let trimmed = entry_name.strip_suffix(b"/").unwrap_or(entry_name);
    let base = trimmed
        .rsplit(|byte| *byte == b'/')
        .next()
        .unwrap_or(trimmed);
    let mut name = b"PaxHeaders.0/".to_vec();
    name.extend(
        base.iter()
            .map(|byte| if byte.is_ascii_graphic() { *byte } else { b'_' })
            .take(NAME_FIELD - name.len()),
    );
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8]) -> EntryHeader {
        EntryHeader {
            name: name.to_vec(),
            kind: EntryKind::Regular { size: 0 },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn record_length_counts_itself() {
        let mut output = Vec::new();
        append_record(&mut output, b"path", b"a");
        assert_eq!(output, b"9 path=a\n");

        // 98 bytes without the length plus 2 digits reach 100, which needs a third digit.
        let mut output = Vec::new();
        let value = vec![b'x'; 91];
        append_record(&mut output, b"path", &value);
        let text = String::from_utf8(output.clone()).unwrap();
        let (length, _) = text.split_once(' ').unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), output.len());
    }

    #[test]
    fn short_ascii_name_needs_no_pax() {
        assert!(pax_records(&entry(b"etc/passwd")).is_empty());
    }

    #[test]
    fn long_name_gets_path_record() {
        let name = vec![b'n'; 150];
        let records = pax_records(&entry(&name));
        let text = String::from_utf8(records).unwrap();
        assert!(text.contains(&format!("path={}\n", "n".repeat(150))));
    }

    #[test]
    fn non_utf8_name_is_binary() {
        let records = pax_records(&entry(b"caf\xe9"));
        assert!(records.windows(8).any(|window| window == b"path=caf"));
        assert!(
            records
                .windows(17)
                .any(|window| window == b"hdrcharset=BINARY")
        );
    }

    #[test]
    fn large_ids_and_xattrs_recorded() {
        let mut header = entry(b"f");
        header.uid = 5_000_000;
        header.xattrs = vec![(b"user.k".to_vec(), b"v\n1".to_vec())];
        let text = String::from_utf8(pax_records(&header)).unwrap();
        assert!(text.contains("uid=5000000\n"));
        assert!(text.contains("SCHILY.xattr.user.k=v\n1\n"));
        assert!(!text.contains("gid="));
    }

    #[test]
    fn header_name_is_printable() {
        assert_eq!(pax_header_name(b"dir/caf\xe9/"), b"PaxHeaders.0/caf_");
    }
}
