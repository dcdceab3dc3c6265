//! The context hash cache: reuse across builds and invalidation.

use std::path::Path;
use std::time::Duration;

use forge_builder::context::{Context, HashCache};
use forge_builder::copy::{CopyPlan, CopyRequest, CopySource};
use forge_builder::rootfs::RootView;

fn plan(context_root: &Path, hashes: &HashCache) -> CopyPlan {
    let context = Context::open(context_root, None).unwrap();
    let request = CopyRequest {
        sources: vec![".".to_string()],
        destination: "/app/".to_string(),
        workdir: "/".to_string(),
        ..CopyRequest::default()
    };
    CopyPlan::new(
        CopySource::Context(&context),
        &request,
        &RootView::empty(),
        hashes,
    )
    .unwrap()
}

fn set_mtime(path: &Path, seconds: i64, nanos: i64) {
    let time = rustix::fs::Timespec {
        tv_sec: seconds,
        tv_nsec: nanos as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::empty()).unwrap();
}

#[test]
fn hash_cache_reuse_and_invalidation() {
    let temp = tempfile::tempdir().unwrap();
    let context = temp.path().join("context");
    std::fs::create_dir(&context).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(context.join(name), name).unwrap();
        set_mtime(&context.join(name), 1_600_000_000, 123);
    }
    let cache_file = temp.path().join("hashes.json");

    // Timestamps in the same second as the hash are not trusted, so wait
    // for the next second before the first build.
    std::thread::sleep(Duration::from_millis(1100));
    let first_cache = HashCache::load(&cache_file);
    let first = plan(&context, &first_cache);
    assert_eq!(first_cache.hashed_files(), 3);
    first_cache.save(&cache_file).unwrap();

    let second_cache = HashCache::load(&cache_file);
    let second = plan(&context, &second_cache);
    assert_eq!(
        second_cache.hashed_files(),
        0,
        "unchanged files are not read again"
    );
    assert_eq!(first.digest(), second.digest());

    // Same size, mtime set back: only the ctime shows the change.
    std::fs::write(context.join("b"), "B").unwrap();
    set_mtime(&context.join("b"), 1_600_000_000, 123);
    let third_cache = HashCache::load(&cache_file);
    let third = plan(&context, &third_cache);
    assert_eq!(
        third_cache.hashed_files(),
        1,
        "the changed file is read again"
    );
    assert_ne!(first.digest(), third.digest());
}

#[test]
fn racy_entry_is_rehashed() {
    let temp = tempfile::tempdir().unwrap();
    let context = temp.path().join("context");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(context.join("a"), "a").unwrap();
    let cache_file = temp.path().join("hashes.json");

    let first_cache = HashCache::load(&cache_file);
    plan(&context, &first_cache);
    first_cache.save(&cache_file).unwrap();

    // The file's ctime is in the same second as the stored hash, so even an
    // identical stat cannot prove the content unchanged.
    let second_cache = HashCache::load(&cache_file);
    plan(&context, &second_cache);
    assert_eq!(second_cache.hashed_files(), 1);
}

#[test]
fn parallel_hash_of_many_files() {
    let temp = tempfile::tempdir().unwrap();
    let context = temp.path().join("context");
    std::fs::create_dir_all(context.join("d")).unwrap();
    for index in 0..64 {
        std::fs::write(context.join(format!("d/{index}")), index.to_string()).unwrap();
    }
    let cache = HashCache::new();
    let plan = plan(&context, &cache);
    assert_eq!(cache.hashed_files(), 64);
    assert_eq!(
        plan.summary()
            .iter()
            .filter(|(path, _)| path.starts_with("/app/d/"))
            .count(),
        64
    );
}
