//! A writer that passes bytes through while computing their sha256 and length.

use std::io::{self, Write};

use oci_spec::image::{Digest, Sha256Digest};
use sha2::{Digest as _, Sha256};

use super::LayerError;

/// Forwards every byte to `inner` and hashes exactly the bytes `inner` accepted.
pub(crate) struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> DigestWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Returns the inner writer, the digest of everything written and its length.
    pub(crate) fn finish(self) -> Result<(W, Digest, u64), LayerError> {
        let digest = sha256_digest(&self.hasher.finalize())?;
        Ok((self.inner, digest, self.bytes))
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        let accepted = buf.get(..written).unwrap_or(buf);
        self.hasher.update(accepted);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Builds an OCI `sha256:` digest from a raw 32-byte hash.
pub(crate) fn sha256_digest(hash: &[u8]) -> Result<Digest, LayerError> {
    let text = hex::encode(hash);
    let parsed: Sha256Digest = text.parse().map_err(|source| LayerError::Digest {
        value: text.clone(),
        source,
    })?;
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input() {
        let writer = DigestWriter::new(Vec::new());
        let (inner, digest, bytes) = writer.finish().unwrap();
        assert!(inner.is_empty());
        assert_eq!(bytes, 0);
        assert_eq!(
            digest.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn digest_counts_and_forwards() {
        let mut writer = DigestWriter::new(Vec::new());
        writer.write_all(b"abc").unwrap();
        let (inner, digest, bytes) = writer.finish().unwrap();
        assert_eq!(inner, b"abc");
        assert_eq!(bytes, 3);
        assert_eq!(
            digest.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
