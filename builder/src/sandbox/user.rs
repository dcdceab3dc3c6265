//! Resolution of a `USER` value with the image's `/etc/passwd` and
//! `/etc/group`, as runc does for Docker.

/// The ids a RUN command runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups: the groups of `/etc/group` that list the user,
    /// given only when the `USER` value names no group.
    pub(crate) groups: Vec<u32>,
    /// Home folder from `/etc/passwd`, `/` when the user has no entry.
    pub(crate) home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || fields.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: fields.first()?,
            uid: fields.get(2)?.parse().ok()?,
            gid: fields.get(3)?.parse().ok()?,
            home: fields.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || fields.len() < 3 {
            return None;
        }
        Some(GroupEntry {
            name: fields.first()?,
            gid: fields.get(2)?.parse().ok()?,
            members: fields
                .get(3)
                .map(|list| list.split(',').filter(|m| !m.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolves `spec` (`name`, `uid`, `name:group`, `uid:gid`, empty for root)
/// with the text of the image's `/etc/passwd` and `/etc/group` (empty when
/// missing).
///
/// # Errors
///
/// A message naming the user or group that is not a number and has no
/// entry in the image.
pub(crate) fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, String> {
    let spec = spec.trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let numeric_uid = user_part.parse::<u32>().ok();
    let entry = passwd_entries(passwd).find(|entry| match numeric_uid {
        Some(uid) => entry.uid == uid,
        None => entry.name == user_part,
    });
    let mut user = match (&entry, numeric_uid) {
        (Some(entry), _) => ExecUser {
            uid: entry.uid,
            gid: entry.gid,
            groups: Vec::new(),
            home: if entry.home.is_empty() {
                "/".to_string()
            } else {
                entry.home.to_string()
            },
        },
        (None, Some(uid)) => ExecUser {
            uid,
            gid: 0,
            groups: Vec::new(),
            home: "/".to_string(),
        },
        (None, None) => {
            return Err(format!(
                "user `{user_part}` not found in the image's /etc/passwd; create it in an \
                 earlier step (for example with adduser) or use a numeric uid"
            ));
        }
    };

    match group_part {
        Some(group_part) if !group_part.is_empty() => {
            user.gid = match group_part.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|entry| entry.name == group_part)
                    .map(|entry| entry.gid)
                    .ok_or_else(|| {
                        format!(
                            "group `{group_part}` not found in the image's /etc/group; create \
                             it in an earlier step or use a numeric gid"
                        )
                    })?,
            };
        }
        _ => {
            if let Some(entry) = &entry {
                let mut groups: Vec<u32> = group_entries(group)
                    .filter(|group| group.members.contains(&entry.name))
                    .map(|group| group.gid)
                    .collect();
                groups.sort_unstable();
                groups.dedup();
                user.groups = groups;
            }
        }
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
                          app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:app,root\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n";

    #[test]
    fn empty_is_root() {
        let user = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((user.uid, user.gid), (0, 0));
        assert_eq!(user.home, "/root");
        assert_eq!(user.groups, vec![10]);
    }

    #[test]
    fn name_gets_groups() {
        let user = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((user.uid, user.gid), (1000, 1000));
        assert_eq!(user.groups, vec![10, 2000]);
        assert_eq!(user.home, "/home/app");
    }

    #[test]
    fn nobody_by_name() {
        let user = resolve("nobody", PASSWD, GROUP).unwrap();
        assert_eq!((user.uid, user.gid), (65534, 65534));
    }

    #[test]
    fn unknown_uid_gets_gid_zero() {
        let user = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((user.uid, user.gid), (4242, 0));
        assert_eq!(user.home, "/");
    }

    #[test]
    fn explicit_group_drops_supplementary() {
        let user = resolve("app:nogroup", PASSWD, GROUP).unwrap();
        assert_eq!((user.uid, user.gid), (1000, 65534));
        assert!(user.groups.is_empty());
        let user = resolve("5:7", PASSWD, GROUP).unwrap();
        assert_eq!((user.uid, user.gid), (5, 7));
    }

    #[test]
    fn unknown_names_fail() {
        let error = resolve("ghost", PASSWD, GROUP).unwrap_err();
        assert!(error.contains("`ghost`"), "{error}");
        let error = resolve("app:ghosts", PASSWD, GROUP).unwrap_err();
        assert!(error.contains("`ghosts`"), "{error}");
    }
}
