//! The container log: one JSON object per line with the stream, the time
//! and the bytes as text (invalid UTF-8 replaced).

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::RunnerError;

/// Output stream of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output (also everything from a terminal).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One chunk of output as it arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The stream.
    pub stream: LogStream,
    /// Arrival time, seconds since the Unix epoch.
    pub time: f64,
    /// The output.
    pub log: String,
}

/// Appends records to a container log.
pub(crate) struct LogWriter {
    file: fs::File,
}

impl LogWriter {
    /// Opens `path` for appending, creating it.
    pub(crate) fn open(path: &Path) -> io::Result<LogWriter> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(LogWriter { file })
    }

    /// Appends `bytes` of `stream`. A failed write is logged and dropped,
    /// so a full disk does not stop the container.
    pub(crate) fn write(&mut self, stream: LogStream, bytes: &[u8]) {
        let record = LogRecord {
            stream,
            time: super::state::now(),
            log: String::from_utf8_lossy(bytes).into_owned(),
        };
        let Ok(mut line) = serde_json::to_vec(&record) else {
            return;
        };
        line.push(b'\n');
        if let Err(error) = self.file.write_all(&line) {
            tracing::warn!(%error, "failed to write the container log");
        }
    }
}

/// Reads the complete records of the log at `path` from byte `offset` on
/// and returns them with the offset after the last complete line. A
/// missing log has no records.
///
/// # Errors
///
/// [`RunnerError::Io`] when the file cannot be read.
pub fn read_logs(path: &Path, offset: u64) -> Result<(Vec<LogRecord>, u64), RunnerError> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(source) => return Err(RunnerError::io("read", path, source)),
    };
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|source| RunnerError::io("read", path, source))?;
    let complete = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |at| at + 1);
    let records = bytes[..complete]
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect();
    Ok((records, offset + complete as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut writer = LogWriter::open(&path).unwrap();
        writer.write(LogStream::Stdout, b"one\n");
        writer.write(LogStream::Stderr, b"two\xff\n");
        let (records, offset) = read_logs(&path, 0).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].log, "one\n");
        assert_eq!(records[1].stream, LogStream::Stderr);
        assert_eq!(records[1].log, "two\u{fffd}\n");
        writer.write(LogStream::Stdout, b"three");
        let (more, _) = read_logs(&path, offset).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].log, "three");
    }

    #[test]
    fn missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (records, offset) = read_logs(&dir.path().join("none"), 5).unwrap();
        assert!(records.is_empty());
        assert_eq!(offset, 5);
    }
}
