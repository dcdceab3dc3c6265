//! A streaming tar reader for extraction.
//!
//! It reads POSIX ustar, GNU and v7 headers. PAX extended headers (`x`) are
//! parsed record by record from their length prefix (`"%d %s=%s\n"`, the
//! length counting the whole record), so a value may hold any byte,
//! including newlines and NUL bytes in binary xattrs such as
//! `security.capability`. GNU long names (`L`, `K`) and old GNU sparse files
//! (`S`) are read as GNU tar writes them. PAX global headers (`g`) are
//! skipped, as Docker and containerd skip them.
//!
//! Framing follows Go's `archive/tar`, which writes and reads most layers:
//! links, symlinks, devices, fifos and directories carry no data whatever
//! their size field records, and a header checksum is accepted as the signed or
//! the unsigned sum of the header bytes.

use std::io::{self, Read};

/// Size of a tar block.
const BLOCK: usize = 512;

/// Largest PAX extended header read, in bytes. Linux limits one xattr value
/// to 64 KiB, so this leaves room for many xattrs and long names.
const MAX_PAX_HEADER: u64 = 8 << 20;

/// Largest GNU long name or long link name read, in bytes.
const MAX_LONG_NAME: u64 = 1 << 20;

/// Largest number of chunks in an old GNU sparse map.
const MAX_SPARSE_CHUNKS: usize = 100_000;

/// Chunks of a sparse map in the main GNU header and in each extension block.
const SPARSE_IN_HEADER: usize = 4;
const SPARSE_IN_EXTENSION: usize = 21;

/// The type of an entry after extension headers are consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryType {
    Regular,
    Directory,
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// Any other type flag, such as GNU's `D` (dump directory) or `V` (volume label).
    Other(u8),
}

/// The data layout of an old GNU sparse file: the archive holds only the
/// chunks, which go to their offsets in a file of `real_size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SparseMap {
    pub(crate) real_size: u64,
    /// `(offset, length)` pairs, sorted and not overlapping; the lengths add
    /// up to the entry's data size.
    pub(crate) chunks: Vec<(u64, u64)>,
}

/// One entry with PAX records, GNU long names and the sparse map applied.
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    /// The entry name as recorded, before any path cleaning.
    pub(crate) name: Vec<u8>,
    pub(crate) entry_type: EntryType,
    /// The link target of a symlink or hard link, empty for other types.
    pub(crate) link_name: Vec<u8>,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    /// Seconds and nanoseconds since the epoch.
    pub(crate) mtime: (i64, u32),
    /// Device numbers of a character or block device, else 0.
    pub(crate) major: u32,
    pub(crate) minor: u32,
    /// Extended attributes in the order the PAX header lists them, each name once.
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) sparse: Option<SparseMap>,
    /// PAX values that could not be parsed and were ignored.
    pub(crate) malformed_values: usize,
}

/// Reads entries from a tar stream; the data of the latest entry is read
/// through [`TarReader::data`] and skipped by the next [`TarReader::next_entry`].
pub(crate) struct TarReader<R> {
    inner: R,
    /// Data bytes of the current entry that were not read yet.
    remaining: u64,
    /// Padding bytes after the current entry's data.
    padding: u64,
    /// Set once the end-of-archive block or the end of the stream is reached.
    finished: bool,
}

/// Extension records collected from the headers before an entry.
#[derive(Default)]
struct Pending {
    pax: Vec<(Vec<u8>, Vec<u8>)>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.pax.is_empty() && self.long_name.is_none() && self.long_link.is_none()
    }

    fn pax_value(&self, key: &[u8]) -> Option<&[u8]> {
        self.pax
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_slice())
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            remaining: 0,
            padding: 0,
            finished: false,
        }
    }

    /// Returns a reader of the current entry's data, which ends at the
    /// entry's data size and fails if the stream ends earlier.
    pub(crate) fn data(&mut self) -> EntryData<'_, R> {
        EntryData { reader: self }
    }

    /// Reads the next entry, or `None` at the end of the archive.
    ///
    /// # Errors
    ///
    /// An [`io::ErrorKind::InvalidData`] error for a malformed header or PAX
    /// record, [`io::ErrorKind::UnexpectedEof`] for a truncated stream, and
    /// any error of the inner reader.
    pub(crate) fn next_entry(&mut self) -> io::Result<Option<TarEntry>> {
        if self.finished {
            return Ok(None);
        }
        self.skip_current()?;

        let mut pending = Pending::default();
        loop {
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block)? || block.iter().all(|byte| *byte == 0) {
                self.finished = true;
                if !pending.is_empty() {
                    return Err(invalid(
                        "the archive ends after an extension header without the entry it describes",
                    ));
                }
                return Ok(None);
            }
            verify_checksum(&block)?;

            let type_flag = field(&block, 156, 1).first().copied().unwrap_or(0);
            let size = header_number(&block, 124, 12, "size")?;
            match type_flag {
                b'x' => {
                    let data = self.read_extension(size, MAX_PAX_HEADER, "PAX extended header")?;
                    pending.pax.extend(parse_pax_records(&data)?);
                }
                b'g' => {
                    // Global records are skipped, but their data is consumed.
                    self.read_extension(size, MAX_PAX_HEADER, "PAX global header")?;
                }
                b'L' => {
                    let data = self.read_extension(size, MAX_LONG_NAME, "GNU long name")?;
                    pending.long_name = Some(c_string(&data).to_vec());
                }
                b'K' => {
                    let data = self.read_extension(size, MAX_LONG_NAME, "GNU long link name")?;
                    pending.long_link = Some(c_string(&data).to_vec());
                }
                _ => {
                    return self
                        .finish_entry(&block, type_flag, size, pending)
                        .map(Some);
                }
            }
        }
    }

    /// Builds the entry of a main header block and positions the stream at its data.
    fn finish_entry(
        &mut self,
        block: &[u8; BLOCK],
        type_flag: u8,
        header_size: u64,
        pending: Pending,
    ) -> io::Result<TarEntry> {
        if pending
            .pax
            .iter()
            .any(|(key, _)| key.starts_with(b"GNU.sparse."))
        {
            return Err(invalid(
                "PAX sparse files (`GNU.sparse.*` records) are not supported; repack the layer without sparse files",
            ));
        }

        let mut name = header_name(block);
        if let Some(long_name) = pending.long_name.clone() {
            name = long_name;
        }
        if let Some(path) = pending.pax_value(b"path").filter(|value| !value.is_empty()) {
            name = path.to_vec();
        }

        let entry_type = match type_flag {
            b'0' | b'7' => EntryType::Regular,
            // Old tar writers mark a directory by a trailing slash alone.
            0 if name.ends_with(b"/") => EntryType::Directory,
            0 => EntryType::Regular,
            b'1' => EntryType::HardLink,
            b'2' => EntryType::Symlink,
            b'3' => EntryType::CharDevice,
            b'4' => EntryType::BlockDevice,
            b'5' => EntryType::Directory,
            b'6' => EntryType::Fifo,
            b'S' => EntryType::Regular,
            other => EntryType::Other(other),
        };

        let mut link_name = c_string(field(block, 157, 100)).to_vec();
        if let Some(long_link) = pending.long_link.clone() {
            link_name = long_link;
        }
        if let Some(path) = pending
            .pax_value(b"linkpath")
            .filter(|value| !value.is_empty())
        {
            link_name = path.to_vec();
        }

        let mut malformed_values = 0;
        let mut pax_number = |key: &[u8]| -> Option<u64> {
            let value = pending.pax_value(key).filter(|value| !value.is_empty())?;
            let parsed = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse().ok());
            if parsed.is_none() {
                malformed_values += 1;
            }
            parsed
        };
        let uid = match pax_number(b"uid") {
            Some(uid) => uid,
            None => header_number(block, 108, 8, "uid")?,
        };
        let gid = match pax_number(b"gid") {
            Some(gid) => gid,
            None => header_number(block, 116, 8, "gid")?,
        };
        let mtime = match pending
            .pax_value(b"mtime")
            .filter(|value| !value.is_empty())
        {
            Some(value) => match std::str::from_utf8(value).ok().and_then(parse_pax_time) {
                Some(mtime) => mtime,
                None => {
                    malformed_values += 1;
                    (header_signed(block, 136, 12, "mtime")?, 0)
                }
            },
            None => (header_signed(block, 136, 12, "mtime")?, 0),
        };
        let mode = header_number(block, 100, 8, "mode")? & 0o7777;

        // A wrong size would misplace every later header, so an unreadable
        // PAX size fails instead of falling back to the header.
        let mut size = header_size;
        if let Some(value) = pending.pax_value(b"size").filter(|value| !value.is_empty()) {
            size = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "invalid PAX size `{}`",
                        String::from_utf8_lossy(value)
                    ))
                })?;
        }

        let (major, minor) = match entry_type {
            EntryType::CharDevice | EntryType::BlockDevice => (
                device_number(block, 329, "device major")?,
                device_number(block, 337, "device minor")?,
            ),
            _ => (0, 0),
        };

        let sparse = if type_flag == b'S' {
            Some(self.read_sparse_map(block, size)?)
        } else {
            None
        };

        let header_only = matches!(
            entry_type,
            EntryType::HardLink
                | EntryType::Symlink
                | EntryType::CharDevice
                | EntryType::BlockDevice
                | EntryType::Directory
                | EntryType::Fifo
        );
        let size = if header_only { 0 } else { size };
        self.remaining = size;
        self.padding = padding(size);

        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (key, value) in &pending.pax {
            let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            if xattr.is_empty() {
                malformed_values += 1;
                continue;
            }
            match xattrs.iter_mut().find(|(name, _)| name == xattr) {
                Some(existing) => existing.1 = value.clone(),
                None => xattrs.push((xattr.to_vec(), value.clone())),
            }
        }

        Ok(TarEntry {
            name,
            entry_type,
            link_name,
            mode: u32::try_from(mode).unwrap_or(0),
            uid,
            gid,
            mtime,
            major,
            minor,
            xattrs,
            sparse,
            malformed_values,
        })
    }

    /// Reads the sparse map of an old GNU sparse header and its extension
    /// blocks, and checks it against the `size` bytes of data that follow.
    fn read_sparse_map(&mut self, block: &[u8; BLOCK], size: u64) -> io::Result<SparseMap> {
        let real_size = header_number(block, 483, 12, "sparse real size")?;
        let mut chunks = Vec::new();
        read_sparse_chunks(block, 386, SPARSE_IN_HEADER, &mut chunks)?;
        let mut extended = field(block, 482, 1).first().is_some_and(|byte| *byte != 0);
        while extended {
            let mut extension = [0u8; BLOCK];
            if !self.read_block(&mut extension)? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the archive ends inside a GNU sparse map",
                ));
            }
            read_sparse_chunks(&extension, 0, SPARSE_IN_EXTENSION, &mut chunks)?;
            if chunks.len() > MAX_SPARSE_CHUNKS {
                return Err(invalid(format!(
                    "the GNU sparse map has more than {MAX_SPARSE_CHUNKS} chunks"
                )));
            }
            extended = field(&extension, 504, 1)
                .first()
                .is_some_and(|byte| *byte != 0);
        }

        let mut end = 0u64;
        let mut total = 0u64;
        for (offset, length) in &chunks {
            let chunk_end = offset
                .checked_add(*length)
                .ok_or_else(|| invalid("a GNU sparse chunk ends past the largest file size"))?;
            if *offset < end || chunk_end > real_size {
                return Err(invalid(format!(
                    "the GNU sparse chunk at offset {offset} overlaps another or ends past the file size {real_size}"
                )));
            }
            end = chunk_end;
            total = total.saturating_add(*length);
        }
        if total != size {
            return Err(invalid(format!(
                "the GNU sparse map lists {total} bytes of data but the entry holds {size}"
            )));
        }
        Ok(SparseMap { real_size, chunks })
    }

    /// Reads the data of an extension header, rejecting one larger than `limit`.
    fn read_extension(&mut self, size: u64, limit: u64, what: &str) -> io::Result<Vec<u8>> {
        if size > limit {
            return Err(invalid(format!(
                "the {what} is {size} bytes, more than the {limit} bytes accepted"
            )));
        }
        let mut data = Vec::new();
        let read = (&mut self.inner).take(size).read_to_end(&mut data)?;
        if (read as u64) < size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the archive ends inside a {what}"),
            ));
        }
        self.remaining = 0;
        self.padding = padding(size);
        self.skip_current()?;
        Ok(data)
    }

    /// Skips what is left of the current entry's data and its padding.
    fn skip_current(&mut self) -> io::Result<()> {
        let count = self.remaining + self.padding;
        if count == 0 {
            return Ok(());
        }
        let skipped = io::copy(&mut (&mut self.inner).take(count), &mut io::sink())?;
        self.remaining = 0;
        self.padding = 0;
        if skipped < count {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside an entry's data",
            ));
        }
        Ok(())
    }

    /// Fills `block`, returning false at a clean end of the stream.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < BLOCK {
            let rest = block.get_mut(filled..).unwrap_or_default();
            match self.inner.read(rest) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the archive ends inside a header block",
                    ));
                }
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }
}

/// The data of the latest entry of a [`TarReader`].
pub(crate) struct EntryData<'r, R> {
    reader: &'r mut TarReader<R>,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.reader.remaining;
        if remaining == 0 {
            return Ok(0);
        }
        let length = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let target = buf.get_mut(..length).unwrap_or_default();
        let count = self.reader.inner.read(target)?;
        if count == 0 && length > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the archive ends {remaining} bytes before the end of the entry's data"),
            ));
        }
        self.reader.remaining -= count as u64;
        Ok(count)
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn field(block: &[u8], start: usize, length: usize) -> &[u8] {
    block.get(start..start + length).unwrap_or_default()
}

/// Returns `bytes` up to the first NUL byte.
fn c_string(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|byte| *byte == 0) {
        Some(end) => bytes.get(..end).unwrap_or(bytes),
        None => bytes,
    }
}

/// Returns the header's name, joined with the ustar prefix field when the
/// header has the POSIX ustar magic (GNU headers use that space otherwise).
fn header_name(block: &[u8]) -> Vec<u8> {
    let name = c_string(field(block, 0, 100));
    let ustar = field(block, 257, 6) == b"ustar\0";
    let prefix = c_string(field(block, 345, 155));
    if !ustar || prefix.is_empty() {
        return name.to_vec();
    }
    let mut joined = prefix.to_vec();
    joined.push(b'/');
    joined.extend_from_slice(name);
    joined
}

/// Checks the header checksum, accepting the unsigned sum of the header
/// bytes (POSIX) or the signed sum (old Sun and GNU tar).
fn verify_checksum(block: &[u8; BLOCK]) -> io::Result<()> {
    let recorded = parse_number(field(block, 148, 8))
        .ok_or_else(|| invalid("the header checksum field is not a number"))?;
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (index, byte) in block.iter().enumerate() {
        let byte = if (148..156).contains(&index) {
            b' '
        } else {
            *byte
        };
        unsigned += i64::from(byte);
        signed += i64::from(byte as i8);
    }
    if recorded != unsigned && recorded != signed {
        return Err(invalid(format!(
            "header checksum mismatch: the header records {recorded}, its bytes sum to {unsigned}"
        )));
    }
    Ok(())
}

fn header_number(block: &[u8], start: usize, length: usize, name: &str) -> io::Result<u64> {
    let value = header_signed(block, start, length, name)?;
    u64::try_from(value).map_err(|_| invalid(format!("the header's {name} {value} is negative")))
}

fn header_signed(block: &[u8], start: usize, length: usize, name: &str) -> io::Result<i64> {
    let raw = field(block, start, length);
    parse_number(raw).ok_or_else(|| {
        invalid(format!(
            "the header's {name} field `{}` is not a number",
            String::from_utf8_lossy(raw).escape_default()
        ))
    })
}

fn device_number(block: &[u8], start: usize, name: &str) -> io::Result<u32> {
    let value = header_number(block, start, 8, name)?;
    u32::try_from(value).map_err(|_| invalid(format!("the {name} {value} is too large")))
}

/// Parses a numeric header field: octal digits padded with spaces or NUL
/// bytes (an empty field is 0), or GNU's base-256 form, whose first byte has
/// the high bit set and whose second-highest bit marks a negative number.
fn parse_number(field: &[u8]) -> Option<i64> {
    if let Some(first) = field.first()
        && first & 0x80 != 0
    {
        let invert = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut value: u64 = 0;
        for (index, byte) in field.iter().enumerate() {
            let mut byte = byte ^ invert;
            if index == 0 {
                byte &= 0x7f;
            }
            if value >> 56 != 0 {
                return None;
            }
            value = (value << 8) | u64::from(byte);
        }
        let value = i64::try_from(value).ok()?;
        return Some(if invert == 0xff { !value } else { value });
    }

    let trimmed = trim(field);
    if trimmed.is_empty() {
        return Some(0);
    }
    let mut value: i64 = 0;
    for byte in trimmed {
        if !(b'0'..=b'7').contains(byte) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(i64::from(byte - b'0'))?;
    }
    Some(value)
}

fn trim(field: &[u8]) -> &[u8] {
    let padding = |byte: &u8| *byte == b' ' || *byte == 0;
    let start = field
        .iter()
        .position(|byte| !padding(byte))
        .unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|byte| !padding(byte))
        .map_or(start, |last| last + 1);
    field.get(start..end).unwrap_or_default()
}

/// Appends the chunks of a sparse map stored as `count` pairs of 12-byte
/// numbers from `start`. The first pair with an empty offset field ends the list.
fn read_sparse_chunks(
    block: &[u8],
    start: usize,
    count: usize,
    chunks: &mut Vec<(u64, u64)>,
) -> io::Result<()> {
    for index in 0..count {
        let at = start + index * 24;
        if field(block, at, 1).first().is_none_or(|byte| *byte == 0) {
            break;
        }
        let offset = header_number(block, at, 12, "sparse offset")?;
        let length = header_number(block, at + 12, 12, "sparse length")?;
        chunks.push((offset, length));
    }
    Ok(())
}

/// Parses the records of a PAX extended header. Each record is
/// `LENGTH KEY=VALUE\n`, where LENGTH is the decimal length of the whole
/// record, so VALUE may contain any byte. Trailing NUL padding is ignored.
///
/// # Errors
///
/// An [`io::ErrorKind::InvalidData`] error naming the byte offset of the
/// first record that does not follow this form.
pub(crate) fn parse_pax_records(data: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut records = Vec::new();
    let mut offset = 0;
    while let Some(rest) = data.get(offset..) {
        if rest.iter().all(|byte| *byte == 0) {
            break;
        }
        let malformed =
            |reason: &str| invalid(format!("malformed PAX record at byte {offset}: {reason}"));

        let space = rest
            .iter()
            .take(20)
            .position(|byte| *byte == b' ')
            .ok_or_else(|| malformed("no decimal length before a space"))?;
        let digits = rest.get(..space).unwrap_or_default();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(malformed("the length is not a decimal number"));
        }
        let length: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| malformed("the length is too large"))?;
        let record = rest
            .get(..length)
            .filter(|record| record.len() > space + 1)
            .ok_or_else(|| malformed("the length points past the end of the header"))?;
        let Some((b'\n', body)) = record
            .split_last()
            .map(|(last, body)| (*last, body.get(space + 1..).unwrap_or_default()))
        else {
            return Err(malformed("the record does not end in a newline"));
        };
        let equals = body
            .iter()
            .position(|byte| *byte == b'=')
            .filter(|equals| *equals > 0)
            .ok_or_else(|| malformed("no `KEY=` after the length"))?;
        let key = body.get(..equals).unwrap_or_default();
        let value = body.get(equals + 1..).unwrap_or_default();
        records.push((key.to_vec(), value.to_vec()));
        offset += length;
    }
    Ok(records)
}

/// Parses a PAX time such as `1700000000.25` or `-5`.
pub(crate) fn parse_pax_time(text: &str) -> Option<(i64, u32)> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = whole.parse().ok()?;
    if !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let mut nanos: u32 = 0;
    for (index, digit) in fraction.bytes().take(9).enumerate() {
        nanos += u32::from(digit - b'0') * 10u32.pow(8 - index as u32);
    }
    Some((seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &[u8], value: &[u8]) -> Vec<u8> {
        let base = key.len() + value.len() + 3;
        let mut length = base + base.to_string().len();
        if length.to_string().len() != base.to_string().len() {
            length += 1;
        }
        let mut output = length.to_string().into_bytes();
        output.push(b' ');
        output.extend_from_slice(key);
        output.push(b'=');
        output.extend_from_slice(value);
        output.push(b'\n');
        output
    }

    /// Builds a ustar header block with a valid checksum.
    fn header(name: &[u8], type_flag: u8, size: u64) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[..name.len()].copy_from_slice(name);
        block[100..107].copy_from_slice(b"0000644");
        block[108..115].copy_from_slice(b"0000000");
        block[116..123].copy_from_slice(b"0000000");
        block[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        block[136..147].copy_from_slice(b"00000000000");
        block[156] = type_flag;
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        set_checksum(&mut block);
        block
    }

    fn set_checksum(block: &mut [u8; BLOCK]) {
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|byte| u32::from(*byte)).sum();
        block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    }

    fn with_data(mut archive: Vec<u8>, data: &[u8]) -> Vec<u8> {
        archive.extend_from_slice(data);
        archive.resize(archive.len().div_ceil(BLOCK) * BLOCK, 0);
        archive
    }

    fn read_all(archive: &[u8]) -> io::Result<Vec<(TarEntry, Vec<u8>)>> {
        let mut reader = TarReader::new(archive);
        let mut entries = Vec::new();
        while let Some(entry) = reader.next_entry()? {
            let mut data = Vec::new();
            reader.data().read_to_end(&mut data)?;
            entries.push((entry, data));
        }
        Ok(entries)
    }

    #[test]
    fn pax_value_keeps_newlines_and_nuls() {
        let value = b"a\nb\0c\n".to_vec();
        let mut data = record(b"SCHILY.xattr.user.k", &value);
        data.extend(record(b"size", b"3"));
        let records = parse_pax_records(&data).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].1, value);
        assert_eq!(records[1], (b"size".to_vec(), b"3".to_vec()));
    }

    #[test]
    fn pax_record_with_wrong_length_rejected() {
        let error = parse_pax_records(b"99 path=a\n").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("byte 0"), "{error}");
    }

    #[test]
    fn pax_record_without_newline_rejected() {
        assert!(parse_pax_records(b"9 path=ab").is_err());
        assert!(parse_pax_records(b"9 path=a!").is_err());
    }

    #[test]
    fn pax_record_without_key_rejected() {
        assert!(parse_pax_records(b"5 =a\n").is_err());
        assert!(parse_pax_records(b"x path=a\n").is_err());
    }

    #[test]
    fn pax_size_after_binary_xattr_applies() {
        let value = b"\x01\n\x00\x02".to_vec();
        let mut pax = record(b"SCHILY.xattr.security.capability", &value);
        pax.extend(record(b"size", b"5"));
        let mut archive = header(b"PaxHeaders/f", b'x', pax.len() as u64).to_vec();
        archive = with_data(archive, &pax);
        archive.extend_from_slice(&header(b"f", b'0', 0));
        archive = with_data(archive, b"hello");
        archive.extend_from_slice(&[0u8; 2 * BLOCK]);

        let entries = read_all(&archive).unwrap();
        assert_eq!(entries.len(), 1);
        let (entry, data) = &entries[0];
        assert_eq!(data, b"hello");
        assert_eq!(
            entry.xattrs,
            vec![(b"security.capability".to_vec(), value.clone())]
        );
    }

    #[test]
    fn directory_data_ignored() {
        // Go's archive/tar reads no data for a directory whatever its size field records.
        let mut archive = header(b"d/", b'5', 0).to_vec();
        archive[124..135].copy_from_slice(b"00000001000");
        set_checksum((&mut archive[..BLOCK]).try_into().unwrap());
        archive.extend_from_slice(&header(b"f", b'0', 0));
        archive.extend_from_slice(&[0u8; 2 * BLOCK]);
        let names: Vec<Vec<u8>> = read_all(&archive)
            .unwrap()
            .into_iter()
            .map(|(entry, _)| entry.name)
            .collect();
        assert_eq!(names, [b"d/".to_vec(), b"f".to_vec()]);
    }

    #[test]
    fn ustar_prefix_joined() {
        let mut block = header(b"name", b'0', 0);
        block[345..351].copy_from_slice(b"prefix");
        set_checksum(&mut block);
        let mut archive = block.to_vec();
        archive.extend_from_slice(&[0u8; 2 * BLOCK]);
        assert_eq!(read_all(&archive).unwrap()[0].0.name, b"prefix/name");
    }

    #[test]
    fn gnu_long_name_applies() {
        let long = vec![b'n'; 300];
        let mut data = long.clone();
        data.push(0);
        let mut archive = header(b"././@LongLink", b'L', data.len() as u64).to_vec();
        archive = with_data(archive, &data);
        archive.extend_from_slice(&header(b"short", b'0', 0));
        archive.extend_from_slice(&[0u8; 2 * BLOCK]);
        assert_eq!(read_all(&archive).unwrap()[0].0.name, long);
    }

    #[test]
    fn checksum_mismatch_rejected() {
        let mut block = header(b"f", b'0', 0);
        block[0] = b'g';
        let error = read_all(&block).unwrap_err();
        assert!(error.to_string().contains("checksum"), "{error}");
    }

    #[test]
    fn truncated_data_is_unexpected_eof() {
        let archive = with_data(header(b"f", b'0', 600).to_vec(), b"short");
        let error = read_all(&archive[..BLOCK + 5]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn extension_without_entry_rejected() {
        let pax = record(b"path", b"x");
        let archive = with_data(header(b"p", b'x', pax.len() as u64).to_vec(), &pax);
        assert!(read_all(&archive).is_err());
    }

    #[test]
    fn gnu_sparse_map_read() {
        let mut block = header(b"sparse", b'S', 6);
        block[257..263].copy_from_slice(b"ustar ");
        block[263..265].copy_from_slice(b" \0");
        block[386..397].copy_from_slice(b"00000000000");
        block[398..409].copy_from_slice(b"00000000002");
        block[410..421].copy_from_slice(b"00000000010");
        block[422..433].copy_from_slice(b"00000000004");
        block[483..494].copy_from_slice(b"00000000020");
        set_checksum(&mut block);
        let mut archive = with_data(block.to_vec(), b"abcdef");
        archive.extend_from_slice(&[0u8; 2 * BLOCK]);
        let entries = read_all(&archive).unwrap();
        let (entry, data) = &entries[0];
        assert_eq!(data, b"abcdef");
        assert_eq!(
            entry.sparse,
            Some(SparseMap {
                real_size: 16,
                chunks: vec![(0, 2), (8, 4)],
            })
        );
    }

    #[test]
    fn numbers_octal_and_base256() {
        assert_eq!(parse_number(b"0000644\0"), Some(0o644));
        assert_eq!(parse_number(b"  644 \0"), Some(0o644));
        assert_eq!(parse_number(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_number(b"0009"), None);
        assert_eq!(parse_number(&[0x80, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(parse_number(&[0xff; 8]), Some(-1));
    }

    #[test]
    fn pax_time_parsing() {
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time("-3"), Some((-3, 0)));
        assert_eq!(parse_pax_time("1.x"), None);
        assert_eq!(parse_pax_time("abc"), None);
    }
}
