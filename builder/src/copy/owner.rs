//! `--chown` values resolved against the image's own `/etc/passwd` and
//! `/etc/group`, never the host's.

use super::CopyError;
use crate::rootfs::RootView;

/// Resolves `user[:group]` to numeric ids.
///
/// A numeric user without a group uses the same number as gid, and a user
/// name without a group uses that user's primary gid from `/etc/passwd`,
/// as BuildKit does.
pub(crate) fn resolve_owner(spec: &str, image: &RootView) -> Result<(u32, u32), CopyError> {
    let invalid = |reason: &str| CopyError::InvalidChown {
        value: spec.to_string(),
        reason: reason.to_string(),
    };
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(invalid("the user part is empty"));
    }
    if group == Some("") {
        return Err(invalid("the group after `:` is empty"));
    }

    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => lookup(image, "/etc/passwd", user, spec)?,
    };
    let gid = match group {
        None => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(image, "/etc/group", group, spec)?.0,
        },
    };
    Ok((uid, gid))
}

/// Resolves the USER `user[:group]` for the directories WORKDIR creates, as
/// BuildKit does there: a name that the image's `/etc/passwd` or
/// `/etc/group` lacks (or an image without the file) is not an error. An
/// unknown user counts as 0:0, and an unknown group keeps the gid found for
/// the user.
///
/// # Errors
///
/// [`CopyError::Io`] when a file exists but cannot be read.
pub(crate) fn resolve_user_or_root(spec: &str, image: &RootView) -> Result<(u32, u32), CopyError> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => find(image, "/etc/passwd", user)?.unwrap_or((0, 0)),
    };
    let gid = match group {
        None => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => find(image, "/etc/group", group)?.map_or(primary_gid, |found| found.0),
        },
    };
    Ok((uid, gid))
}

/// Finds `name` in a colon-separated database of the image and returns its
/// third and fourth fields (the id, and for `/etc/passwd` the primary gid).
fn lookup(image: &RootView, file: &str, name: &str, spec: &str) -> Result<(u32, u32), CopyError> {
    find(image, file, name)?.ok_or_else(|| CopyError::UnknownOwner {
        value: spec.to_string(),
        name: name.to_string(),
        file: file.to_string(),
    })
}

/// Returns what [`lookup`] returns, or `None` when the file or the name is
/// missing.
fn find(image: &RootView, file: &str, name: &str) -> Result<Option<(u32, u32)>, CopyError> {
    let bytes = image.read_file(file).map_err(|source| CopyError::Io {
        path: file.to_string(),
        action: "read the image's",
        source,
    })?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines() {
        let mut fields = line.split(':');
        if fields.next() != Some(name) {
            continue;
        }
        let id = fields.nth(1).and_then(|field| field.parse::<u32>().ok());
        let second = fields.next().and_then(|field| field.parse::<u32>().ok());
        if let Some(id) = id {
            return Ok(Some((id, second.unwrap_or(id))));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_users() -> (tempfile::TempDir, RootView) {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir(temp.path().join("etc")).unwrap();
        std::fs::write(
            temp.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(temp.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        let view = RootView::new(vec![temp.path().to_path_buf()]);
        (temp, view)
    }

    #[test]
    fn owner_table() {
        let (_temp, view) = image_with_users();
        let cases: &[(&str, (u32, u32))] = &[
            ("app", (1000, 1001)),
            ("app:staff", (1000, 50)),
            ("app:7", (1000, 7)),
            ("42", (42, 42)),
            ("42:staff", (42, 50)),
            ("0:0", (0, 0)),
        ];
        for (spec, expected) in cases {
            assert_eq!(resolve_owner(spec, &view).unwrap(), *expected, "{spec}");
        }
    }

    #[test]
    fn unknown_user_names_file() {
        let (_temp, view) = image_with_users();
        let message = resolve_owner("nobody", &view).unwrap_err().to_string();
        assert!(message.contains("nobody"), "{message}");
        assert!(message.contains("/etc/passwd"), "{message}");
        let message = resolve_owner("app:wheel", &view).unwrap_err().to_string();
        assert!(message.contains("/etc/group"), "{message}");
    }

    #[test]
    fn workdir_user_table() {
        let (_temp, view) = image_with_users();
        let cases: &[(&str, (u32, u32))] = &[
            ("app", (1000, 1001)),
            ("app:staff", (1000, 50)),
            ("app:wheel", (1000, 1001)),
            ("nobody", (0, 0)),
            ("nobody:staff", (0, 50)),
            ("42", (42, 42)),
            ("42:wheel", (42, 42)),
            ("1234:2345", (1234, 2345)),
        ];
        for (spec, expected) in cases {
            assert_eq!(
                resolve_user_or_root(spec, &view).unwrap(),
                *expected,
                "{spec}"
            );
        }
        let empty = RootView::empty();
        assert_eq!(resolve_user_or_root("app:staff", &empty).unwrap(), (0, 0));
    }

    #[test]
    fn empty_parts_rejected() {
        let view = RootView::empty();
        assert!(resolve_owner(":1", &view).is_err());
        assert!(resolve_owner("1:", &view).is_err());
        assert!(resolve_owner("app", &view).is_err());
    }
}
