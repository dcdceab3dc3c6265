//! Feeds arbitrary bytes, decompressed when they start with a known magic,
//! to layer extraction in both whiteout modes. Any panic is a bug, and so is
//! a file created outside the destination: a sentinel folder beside the
//! destination must stay empty, and the folder holding both must contain
//! nothing else.
#![no_main]

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use forge_cache::layer::{ExtractOptions, WhiteoutMode, decompress, extract};
use libfuzzer_sys::fuzz_target;

/// Largest decompressed stream extracted per run, so that a small
/// compressed input cannot fill the disk.
const MAX_STREAM: u64 = 4 << 20;

struct Folders {
    base: PathBuf,
    dest: PathBuf,
    sentinel: PathBuf,
}

fn folders() -> &'static Folders {
    static FOLDERS: OnceLock<Folders> = OnceLock::new();
    FOLDERS.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("forge-fuzz-extract-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let dest = base.join("dest");
        let sentinel = base.join("sentinel");
        fs::create_dir_all(&dest).expect("create the fuzz destination");
        fs::create_dir_all(&sentinel).expect("create the sentinel folder");
        Folders {
            base,
            dest,
            sentinel,
        }
    })
}

fn reset(dest: &PathBuf) {
    // Entries may leave directories without write or search permission.
    if fs::remove_dir_all(dest).is_err() {
        let _ = std::process::Command::new("chmod")
            .args(["-R", "u+rwx"])
            .arg(dest)
            .status();
        fs::remove_dir_all(dest).expect("clear the fuzz destination");
    }
    fs::create_dir(dest).expect("recreate the fuzz destination");
}

fn check_outside(folders: &Folders) {
    let stray: Vec<_> = fs::read_dir(&folders.sentinel)
        .expect("list the sentinel folder")
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect();
    assert!(
        stray.is_empty(),
        "extraction wrote outside the destination: {stray:?}"
    );
    let mut names: Vec<_> = fs::read_dir(&folders.base)
        .expect("list the fuzz folder")
        .map(|entry| entry.expect("read the fuzz folder").file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["dest", "sentinel"],
        "extraction wrote beside the destination"
    );
}

fuzz_target!(|data: &[u8]| {
    let folders = folders();
    for whiteouts in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        reset(&folders.dest);
        let options = ExtractOptions {
            whiteouts,
            ..ExtractOptions::for_current_user()
        };
        if let Ok(stream) = decompress(Box::new(data)) {
            let _ = extract(stream.take(MAX_STREAM), &folders.dest, &options);
        }
        check_outside(folders);
    }
});
