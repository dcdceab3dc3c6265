//! Compressors for writing layers, and detection of a blob's compression for reading.
//!
//! Gzip output is made like `pigz --independent`. The input is cut into
//! [`GZIP_BLOCK_SIZE`] blocks at fixed offsets, and each block is deflated on
//! its own, without the previous block as dictionary. A sync flush ends each
//! block byte-aligned and non-final, so the blocks concatenate into one
//! deflate stream inside a single gzip member. The blocks depend only on
//! the input and the level, never on timing or the number of cores, so the
//! same input always gives the same bytes.

use std::collections::VecDeque;
use std::io::{self, Cursor, Read, Write};
use std::sync::mpsc::{Receiver, sync_channel};

use flate2::{Compress, FlushCompress};

use super::{Compression, LayerError};

/// Uncompressed bytes per independently deflated gzip block.
pub(crate) const GZIP_BLOCK_SIZE: usize = 1 << 20;

/// Gzip member header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty final deflate block with fixed Huffman codes, which ends the stream.
const DEFLATE_FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// A compressing writer for one of the [`Compression`] kinds.
pub(crate) enum Encoder<W: Write> {
    Gzip(ParallelGzipEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write> Encoder<W> {
    /// Creates an encoder; `level` must already be validated.
    pub(crate) fn new(compression: Compression, level: i32, inner: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => Encoder::Gzip(ParallelGzipEncoder::new(inner, level)),
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(inner, level)?;
                encoder.include_checksum(true)?;
                // zstd gives the same output for every worker count of 1 or
                // more, but a different one with 0 workers, so never use 0.
                encoder.multithread(worker_count())?;
                Encoder::Zstd(encoder)
            }
            Compression::None => Encoder::None(inner),
        })
    }

    /// Writes the end of the compressed stream and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(encoder) => encoder.finish(),
            Encoder::Zstd(encoder) => encoder.finish(),
            Encoder::None(inner) => Ok(inner),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(encoder) => encoder.write(buf),
            Encoder::Zstd(encoder) => encoder.write(buf),
            Encoder::None(inner) => inner.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(encoder) => encoder.flush(),
            Encoder::Zstd(encoder) => encoder.flush(),
            Encoder::None(inner) => inner.flush(),
        }
    }
}

fn worker_count() -> u32 {
    std::thread::available_parallelism()
        .map(|count| u32::try_from(count.get()).unwrap_or(1))
        .unwrap_or(1)
        .max(1)
}

/// Compresses `input`, an uncompressed tar stream, into `sink` with the
/// encoder that [`super::write_layer`] uses, so the same tar and level give
/// the same blob. `level` of `None` takes the default of `compression`.
/// Returns the number of uncompressed bytes read.
///
/// # Errors
///
/// [`LayerError::InvalidLevel`] for a level out of range,
/// [`LayerError::Read`] when `input` fails and [`LayerError::Write`] when
/// compressing or writing to `sink` fails. After an error `sink` may
/// contain a partial blob.
pub fn compress(
    input: &mut dyn Read,
    compression: Compression,
    level: Option<i32>,
    sink: &mut dyn Write,
) -> Result<u64, LayerError> {
    let level = checked_level(compression, level)?;
    let write_error = |source| LayerError::Write {
        compression,
        source,
    };
    let mut encoder = Encoder::new(compression, level, sink).map_err(write_error)?;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let count = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(LayerError::Read { source }),
        };
        let chunk = buffer.get(..count).unwrap_or_default();
        encoder.write_all(chunk).map_err(write_error)?;
        total += count as u64;
    }
    encoder
        .finish()
        .and_then(|sink| sink.flush())
        .map_err(write_error)?;
    Ok(total)
}

/// Returns the validated level for `compression`, or its default.
pub(crate) fn checked_level(
    compression: Compression,
    level: Option<i32>,
) -> Result<i32, LayerError> {
    let Some(level) = level else {
        return Ok(compression.default_level());
    };
    let (min, max) = compression.level_range();
    if level < min || level > max {
        return Err(LayerError::InvalidLevel {
            compression,
            level,
            min,
            max,
        });
    }
    Ok(level)
}

/// A gzip writer that deflates fixed-size blocks on a private thread pool.
///
/// Memory stays bounded: at most `max_pending` blocks are in flight, each at
/// most [`GZIP_BLOCK_SIZE`] bytes plus its compressed form.
pub(crate) struct ParallelGzipEncoder<W: Write> {
    inner: W,
    level: flate2::Compression,
    block: Vec<u8>,
    crc: flate2::Crc,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    pool: Option<rayon::ThreadPool>,
    header_written: bool,
}

impl<W: Write> ParallelGzipEncoder<W> {
    fn new(inner: W, level: i32) -> Self {
        let level = u32::try_from(level).unwrap_or(6).min(9);
        Self {
            inner,
            level: flate2::Compression::new(level),
            block: Vec::new(),
            crc: flate2::Crc::new(),
            pending: VecDeque::new(),
            max_pending: 2 * worker_count() as usize,
            pool: None,
            header_written: false,
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.inner.write_all(&GZIP_HEADER)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Hands the full current block to the pool, first writing out the oldest
    /// block when too many are in flight.
    fn submit_block(&mut self) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }

        let block = std::mem::replace(&mut self.block, Vec::with_capacity(GZIP_BLOCK_SIZE));
        let level = self.level;
        let (sender, receiver) = sync_channel(1);
        let pool = match self.pool.take() {
            Some(pool) => pool,
            // A private pool keeps a caller that runs on the global rayon pool
            // from waiting on jobs queued behind itself.
            None => rayon::ThreadPoolBuilder::new()
                .num_threads(worker_count() as usize)
                .thread_name(|index| format!("forge-gzip-{index}"))
                .build()
                .map_err(io::Error::other)?,
        };
        pool.spawn(move || {
            // The receiver is gone only when the encoder was dropped mid-stream.
            let _ = sender.send(deflate_block(&block, level));
        });
        self.pool = Some(pool);
        self.pending.push_back(receiver);
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(receiver) = self.pending.pop_front() else {
            return Ok(());
        };
        let compressed = receiver.recv().map_err(|_| {
            io::Error::other("a gzip compression worker stopped without a result")
        })??;
        self.write_header()?;
        self.inner.write_all(&compressed)
    }

    fn finish(mut self) -> io::Result<W> {
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.write_header()?;

        // The last, partial block is small enough to deflate on this thread.
        if !self.block.is_empty() {
            let compressed = deflate_block(&self.block, self.level)?;
            self.inner.write_all(&compressed)?;
        }
        self.inner.write_all(&DEFLATE_FINAL_BLOCK)?;
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzipEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.block.capacity() == 0 {
            self.block.reserve_exact(GZIP_BLOCK_SIZE);
        }
        let room = GZIP_BLOCK_SIZE - self.block.len();
        let taken = buf.get(..room.min(buf.len())).unwrap_or(buf);
        self.block.extend_from_slice(taken);
        self.crc.update(taken);
        if self.block.len() == GZIP_BLOCK_SIZE {
            self.submit_block()?;
        }
        Ok(taken.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing mid-stream would cut a block at a timing-dependent offset,
        // so only data that is already complete is passed on.
        self.inner.flush()
    }
}

/// Bytes per sample that [`looks_incompressible`] compresses.
const SAMPLE_SIZE: usize = 16 * 1024;

/// Samples per block that [`looks_incompressible`] takes.
const SAMPLES: usize = 4;

/// Returns whether deflate would barely shrink `input`, judged by
/// compressing a few samples spread over it at a fast level.
/// Random data and files that are already compressed (archives, images,
/// media) cost a deflater at level 6 about as much time as text does and
/// save almost nothing, so such blocks are stored instead. The verdict
/// depends only on the bytes, so output stays reproducible.
fn looks_incompressible(input: &[u8]) -> bool {
    if input.len() < SAMPLES * SAMPLE_SIZE {
        return false;
    }
    let stride = (input.len() - SAMPLE_SIZE) / (SAMPLES - 1);
    let mut output = Vec::with_capacity(SAMPLE_SIZE + 1024);
    (0..SAMPLES).all(|index| {
        let start = index * stride;
        let Some(sample) = input.get(start..start + SAMPLE_SIZE) else {
            return false;
        };
        output.clear();
        // Level 2, because level 1 may use fixed Huffman codes, which miss
        // the gain on data with skewed byte frequencies.
        let mut compressor = Compress::new(flate2::Compression::new(2), false);
        match compressor.compress_vec(sample, &mut output, FlushCompress::Finish) {
            // A sample counts as incompressible when deflate saves under 3%,
            // or when its output did not even fit the input's size.
            Ok(_) => {
                compressor.total_in() < sample.len() as u64
                    || output.len() * 100 >= sample.len() * 97
            }
            Err(_) => false,
        }
    })
}

/// Deflates one block as raw deflate data ending in a sync flush.
fn deflate_block(input: &[u8], level: flate2::Compression) -> io::Result<Vec<u8>> {
    let level = if level.level() > 0 && looks_incompressible(input) {
        flate2::Compression::none()
    } else {
        level
    };
    let mut compressor = Compress::new(level, false);
    let mut output = Vec::with_capacity(input.len() / 2 + 64);
    loop {
        let consumed = usize::try_from(compressor.total_in()).unwrap_or(usize::MAX);
        let rest = input.get(consumed..).unwrap_or_default();
        if output.capacity() - output.len() < 64 {
            output.reserve(output.capacity().max(4096));
        }
        compressor
            .compress_vec(rest, &mut output, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        // The flush is complete once all input is in and the compressor
        // stopped with output room to spare.
        if compressor.total_in() == input.len() as u64 && output.len() < output.capacity() {
            return Ok(output);
        }
    }
}

/// Names of formats recognised by magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
    Plain,
}

fn detect(magic: &[u8]) -> Detected {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Detected::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Detected::Zstd
    } else if magic.starts_with(b"BZh") {
        Detected::Bzip2
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Detected::Xz
    } else {
        Detected::Plain
    }
}

/// Wraps a possibly compressed reader so that it yields the uncompressed bytes.
///
/// The format is detected from the first bytes, never from a name. Gzip,
/// zstd, bzip2 and xz are decompressed, each including streams of several
/// concatenated members (as `pigz`, `pbzip2` and `pixz` write them).
/// Anything else is passed through as an uncompressed tar stream.
///
/// # Errors
///
/// [`LayerError::Read`] when the first bytes cannot be read or a zstd
/// decoder cannot be created. Corrupt compressed data fails later, on read.
pub fn decompress<'a>(
    mut reader: Box<dyn Read + Send + 'a>,
) -> Result<Box<dyn Read + Send + 'a>, LayerError> {
    let mut magic = [0u8; 6];
    let mut filled = 0;
    while filled < magic.len() {
        let rest = magic.get_mut(filled..).unwrap_or_default();
        match reader.read(rest) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(LayerError::Read { source }),
        }
    }
    let head = magic.get(..filled).unwrap_or_default().to_vec();
    let detected = detect(&head);
    let stream: Box<dyn Read + Send + 'a> = Box::new(Cursor::new(head).chain(reader));

    match detected {
        Detected::Gzip => Ok(Box::new(flate2::read::MultiGzDecoder::new(stream))),
        Detected::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(stream)
                .map_err(|source| LayerError::Read { source })?;
            Ok(Box::new(decoder))
        }
        Detected::Bzip2 => Ok(Box::new(bzip2::read::MultiBzDecoder::new(stream))),
        Detected::Xz => Ok(Box::new(liblzma::read::XzDecoder::new_multi_decoder(
            stream,
        ))),
        Detected::Plain => Ok(stream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|index| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Half text-like and half noise, so both compress differently.
                if index % 2 == 0 {
                    b'a' + (index % 7) as u8
                } else {
                    (state >> 56) as u8
                }
            })
            .collect()
    }

    fn gzip(input: &[u8], level: i32, chunk: usize) -> Vec<u8> {
        let mut encoder = ParallelGzipEncoder::new(Vec::new(), level);
        for piece in input.chunks(chunk.max(1)) {
            encoder.write_all(piece).unwrap();
        }
        encoder.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut output = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut output)
            .unwrap();
        output
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn noise_is_stored_and_text_is_deflated() {
        let random = noise(GZIP_BLOCK_SIZE, 5);
        assert!(looks_incompressible(&random));
        assert!(!looks_incompressible(&pseudo_random(GZIP_BLOCK_SIZE, 5)));
        assert!(!looks_incompressible(&vec![0u8; GZIP_BLOCK_SIZE]));

        let stored = deflate_block(&random, flate2::Compression::new(6)).unwrap();
        let level_zero = deflate_block(&random, flate2::Compression::none()).unwrap();
        assert_eq!(stored, level_zero);
    }

    #[test]
    fn gzip_roundtrip_mixed_noise_and_text() {
        let mut input = noise(2 * GZIP_BLOCK_SIZE, 9);
        let text = (0..).flat_map(|line: u32| format!("line {line} of a layer\n").into_bytes());
        input.extend(text.take(GZIP_BLOCK_SIZE));
        input.extend(noise(GZIP_BLOCK_SIZE / 3, 10));
        let compressed = gzip(&input, 6, 65_536);
        assert_eq!(gunzip(&compressed), input);
        // The text block still shrinks.
        assert!(compressed.len() < input.len() - GZIP_BLOCK_SIZE / 4);
    }

    #[test]
    fn gzip_roundtrip_empty() {
        let compressed = gzip(b"", 6, 1);
        assert_eq!(gunzip(&compressed), b"");
    }

    #[test]
    fn gzip_roundtrip_many_blocks() {
        let input = pseudo_random(3 * GZIP_BLOCK_SIZE + 12345, 7);
        let compressed = gzip(&input, 6, 100_000);
        assert_eq!(gunzip(&compressed), input);
    }

    #[test]
    fn gzip_roundtrip_level_zero() {
        let input = pseudo_random(GZIP_BLOCK_SIZE + 1, 3);
        let compressed = gzip(&input, 0, 4096);
        assert_eq!(gunzip(&compressed), input);
    }

    #[test]
    fn gzip_output_independent_of_write_sizes() {
        let input = pseudo_random(2 * GZIP_BLOCK_SIZE + 99, 11);
        let small_writes = gzip(&input, 6, 777);
        let large_writes = gzip(&input, 6, 5 * GZIP_BLOCK_SIZE);
        assert_eq!(small_writes, large_writes);
    }

    #[test]
    fn gzip_is_single_member() {
        let input = pseudo_random(2 * GZIP_BLOCK_SIZE, 5);
        let compressed = gzip(&input, 6, 65536);
        let mut decoder = flate2::read::GzDecoder::new(&compressed[..]);
        let mut output = Vec::new();
        decoder.read_to_end(&mut output).unwrap();
        // A single-member reader stops at the end of the first member.
        assert_eq!(output.len(), input.len());
    }

    #[test]
    fn zstd_output_independent_of_workers() {
        let input = pseudo_random(3 * 1024 * 1024, 9);
        let compress = |workers: u32| {
            let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            encoder.include_checksum(true).unwrap();
            encoder.multithread(workers).unwrap();
            encoder.write_all(&input).unwrap();
            encoder.finish().unwrap()
        };
        assert_eq!(compress(1), compress(4));
    }

    #[test]
    fn level_out_of_range_rejected() {
        let error = checked_level(Compression::Gzip, Some(10)).unwrap_err();
        assert!(matches!(error, LayerError::InvalidLevel { level: 10, .. }));
    }

    #[test]
    fn level_default_used() {
        assert_eq!(checked_level(Compression::Zstd, None).unwrap(), 3);
    }

    #[test]
    fn decompress_detects_formats() {
        let input = pseudo_random(10_000, 1);
        let gzipped = gzip(&input, 6, 1000);
        let zstded = zstd::encode_all(&input[..], 3).unwrap();

        for data in [gzipped, zstded, input.clone()] {
            let mut reader = decompress(Box::new(Cursor::new(data))).unwrap();
            let mut output = Vec::new();
            reader.read_to_end(&mut output).unwrap();
            assert_eq!(output, input);
        }
    }

    #[test]
    fn decompress_short_input_is_plain() {
        let mut reader = decompress(Box::new(Cursor::new(b"ab".to_vec()))).unwrap();
        let mut output = Vec::new();
        reader.read_to_end(&mut output).unwrap();
        assert_eq!(output, b"ab");
    }

    #[test]
    fn decompress_reads_concatenated_bzip2_streams() {
        let input = pseudo_random(50_000, 4);
        let (first, second) = input.split_at(20_000);
        let mut data = Vec::new();
        for part in [first, second] {
            let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            encoder.write_all(part).unwrap();
            data.extend(encoder.finish().unwrap());
        }
        let mut reader = decompress(Box::new(Cursor::new(data))).unwrap();
        let mut output = Vec::new();
        reader.read_to_end(&mut output).unwrap();
        assert_eq!(output, input);
    }

    #[test]
    fn decompress_reads_concatenated_xz_streams() {
        let input = pseudo_random(50_000, 6);
        let (first, second) = input.split_at(30_000);
        let mut data = Vec::new();
        for part in [first, second] {
            let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
            encoder.write_all(part).unwrap();
            data.extend(encoder.finish().unwrap());
        }
        let mut reader = decompress(Box::new(Cursor::new(data))).unwrap();
        let mut output = Vec::new();
        reader.read_to_end(&mut output).unwrap();
        assert_eq!(output, input);
    }

    #[test]
    fn decompress_corrupt_xz_fails_on_read() {
        let mut reader = decompress(Box::new(Cursor::new(b"\xfd7zXZ\x00rest".to_vec()))).unwrap();
        let mut output = Vec::new();
        assert!(reader.read_to_end(&mut output).is_err());
    }

    #[test]
    fn compress_gzip_matches_layer_encoder() {
        let input = pseudo_random(GZIP_BLOCK_SIZE + 12_345, 11);
        let mut blob = Vec::new();
        let read = compress(&mut Cursor::new(&input), Compression::Gzip, None, &mut blob).unwrap();
        assert_eq!(read, input.len() as u64);
        assert_eq!(blob, gzip(&input, 6, 4096));
        assert_eq!(gunzip(&blob), input);
    }

    #[test]
    fn compress_zstd_roundtrip() {
        let input = pseudo_random(200_000, 12);
        let mut blob = Vec::new();
        compress(
            &mut Cursor::new(&input),
            Compression::Zstd,
            Some(-1),
            &mut blob,
        )
        .unwrap();
        let mut output = Vec::new();
        decompress(Box::new(Cursor::new(blob)))
            .unwrap()
            .read_to_end(&mut output)
            .unwrap();
        assert_eq!(output, input);
    }

    #[test]
    fn compress_rejects_level_out_of_range() {
        let mut blob = Vec::new();
        let error = compress(
            &mut Cursor::new(b"x"),
            Compression::Gzip,
            Some(10),
            &mut blob,
        )
        .unwrap_err();
        assert!(
            matches!(error, LayerError::InvalidLevel { level: 10, .. }),
            "{error}"
        );
        assert!(blob.is_empty());
    }
}
