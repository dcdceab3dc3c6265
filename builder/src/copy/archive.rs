//! Local tar archives for ADD: detection by content and unpacking.

use std::io::{self, Cursor, Read};

/// Compression of an archive, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    Plain,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::Plain
        }
    }
}

/// Wraps `reader` so that it yields the uncompressed bytes.
pub(crate) fn decompressed<'a>(
    mut reader: Box<dyn Read + Send + 'a>,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut head = [0u8; 6];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(head.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    let head = head.get(..filled).unwrap_or_default().to_vec();
    let compression = Compression::detect(&head);
    let stream: Box<dyn Read + Send + 'a> = Box::new(Cursor::new(head).chain(reader));
    Ok(match compression {
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(stream)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(stream)),
        Compression::Plain | Compression::Gzip | Compression::Zstd => {
            forge_cache::layer::decompress(stream).map_err(io::Error::other)?
        }
    })
}

/// Checks whether `reader` contains a tar archive, possibly compressed: the first
/// 512 uncompressed bytes must form a tar header with a valid checksum.
pub(crate) fn is_archive(reader: Box<dyn Read + Send + '_>) -> bool {
    let Ok(mut stream) = decompressed(reader) else {
        return false;
    };
    let mut header = [0u8; 512];
    let mut filled = 0;
    while filled < header.len() {
        match stream.read(header.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => return false,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    valid_tar_header(&header)
}

/// Checks whether `head`, the first bytes of a stream, starts a tar archive:
/// gzip, bzip2, xz or zstd magic bytes, or an uncompressed tar header with a
/// valid checksum in the first 512 bytes.
pub(crate) fn is_archive_head(head: &[u8]) -> bool {
    if Compression::detect(head) != Compression::Plain {
        return true;
    }
    match head
        .get(..512)
        .and_then(|block| <&[u8; 512]>::try_from(block).ok())
    {
        Some(header) => valid_tar_header(header),
        None => false,
    }
}

/// Checks the header checksum: the byte sum of the header with the
/// checksum field read as spaces equals the octal number in that field.
fn valid_tar_header(header: &[u8; 512]) -> bool {
    let Some(field) = header.get(148..156) else {
        return false;
    };
    let text: String = field
        .iter()
        .take_while(|byte| **byte != 0)
        .map(|byte| char::from(*byte))
        .collect();
    let Ok(recorded) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(index, byte)| {
            if (148..156).contains(&index) {
                u32::from(b' ')
            } else {
                u32::from(*byte)
            }
        })
        .sum();
    sum == recorded && header.iter().any(|byte| *byte != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_not_archive() {
        let reader = Box::new(Cursor::new(b"hello world".repeat(100)));
        assert!(!is_archive(reader));
    }

    #[test]
    fn zero_block_is_not_archive() {
        let reader = Box::new(Cursor::new(vec![0u8; 1024]));
        assert!(!is_archive(reader));
    }

    #[test]
    fn archive_head_detection() {
        let mut header = [0u8; 512];
        header[..5].copy_from_slice(b"a.txt");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|byte| u32::from(*byte)).sum();
        let checksum = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(checksum.as_bytes());
        assert!(is_archive_head(&header));

        let mut broken = header;
        broken[0] = b'b';
        assert!(!is_archive_head(&broken));
        assert!(is_archive_head(b"\x1f\x8b\x08\x00"));
        assert!(!is_archive_head(b"FROM scratch\nLABEL a=b\n"));
        assert!(!is_archive_head(b""));
        assert!(!is_archive_head(&[0u8; 1024]));
    }

    #[test]
    fn detect_magic_numbers() {
        assert_eq!(Compression::detect(b"\x1f\x8b\x08"), Compression::Gzip);
        assert_eq!(Compression::detect(b"BZh91"), Compression::Bzip2);
        assert_eq!(Compression::detect(b"\xfd7zXZ\x00"), Compression::Xz);
        assert_eq!(Compression::detect(b"\x28\xb5\x2f\xfd"), Compression::Zstd);
        assert_eq!(Compression::detect(b"ustar"), Compression::Plain);
    }
}
