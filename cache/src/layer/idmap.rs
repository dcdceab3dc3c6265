//! User namespace id maps between container ids and host ids.

use std::path::PathBuf;

/// One line of a `uid_map` or `gid_map`: container ids
/// `container..container + count` are host ids `host..host + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the namespace.
    pub container: u32,
    /// First id on the host.
    pub host: u32,
    /// Number of ids in the range.
    pub count: u32,
}

impl IdRange {
    fn to_host(self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container)?;
        (offset < self.count).then(|| self.host.checked_add(offset))?
    }

    fn to_container(self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.host)?;
        (offset < self.count).then(|| self.container.checked_add(offset))?
    }
}

/// The uid and gid maps of a user namespace, as the kernel reads them from
/// `/proc/PID/uid_map` and `/proc/PID/gid_map`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    /// Ranges of user ids.
    pub uids: Vec<IdRange>,
    /// Ranges of group ids.
    pub gids: Vec<IdRange>,
}

/// Whether an id is a user id or a group id, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A user id.
    Uid,
    /// A group id.
    Gid,
}

impl std::fmt::Display for IdKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdKind::Uid => "uid",
            IdKind::Gid => "gid",
        })
    }
}

impl IdMap {
    /// Returns the host id that container id `id` of `kind` is, or `None`
    /// when no range contains it.
    pub fn to_host(&self, kind: IdKind, id: u32) -> Option<u32> {
        self.ranges(kind).iter().find_map(|range| range.to_host(id))
    }

    /// Returns the container id that host id `id` of `kind` appears as, or
    /// `None` when no range contains it.
    pub fn to_container(&self, kind: IdKind, id: u32) -> Option<u32> {
        self.ranges(kind)
            .iter()
            .find_map(|range| range.to_container(id))
    }

    fn ranges(&self, kind: IdKind) -> &[IdRange] {
        match kind {
            IdKind::Uid => &self.uids,
            IdKind::Gid => &self.gids,
        }
    }
}

/// The owner and mode that an extracted entry records, for a caller that
/// cannot set owners itself (see [`super::extract_recording_owners`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedOwner {
    /// The entry's path relative to the destination, as the layer names it,
    /// or empty for the destination itself. A symlink among its parents
    /// must be resolved inside the destination, as the extraction did.
    pub path: PathBuf,
    /// The uid that the layer records.
    pub uid: u32,
    /// The gid that the layer records.
    pub gid: u32,
    /// Permission bits including setuid, setgid and sticky, which changing
    /// the owner of a regular file clears.
    pub mode: u32,
    /// Whether the entry is a symlink, whose mode cannot be set.
    pub symlink: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootless_map() -> IdMap {
        let ranges = vec![
            IdRange {
                container: 0,
                host: 1001,
                count: 1,
            },
            IdRange {
                container: 1,
                host: 100_000,
                count: 65536,
            },
        ];
        IdMap {
            uids: ranges.clone(),
            gids: ranges,
        }
    }

    #[test]
    fn container_ids_map_to_host() {
        let map = rootless_map();
        assert_eq!(map.to_host(IdKind::Uid, 0), Some(1001));
        assert_eq!(map.to_host(IdKind::Uid, 1), Some(100_000));
        assert_eq!(map.to_host(IdKind::Gid, 1000), Some(100_999));
        assert_eq!(map.to_host(IdKind::Uid, 65536), Some(165_535));
        assert_eq!(map.to_host(IdKind::Uid, 65537), None);
    }

    #[test]
    fn host_ids_map_to_container() {
        let map = rootless_map();
        assert_eq!(map.to_container(IdKind::Uid, 1001), Some(0));
        assert_eq!(map.to_container(IdKind::Gid, 100_999), Some(1000));
        assert_eq!(map.to_container(IdKind::Uid, 0), None);
        assert_eq!(map.to_container(IdKind::Uid, 99_999), None);
        assert_eq!(map.to_container(IdKind::Uid, 165_536), None);
    }

    #[test]
    fn range_end_does_not_overflow() {
        let map = IdMap {
            uids: vec![IdRange {
                container: 0,
                host: u32::MAX - 1,
                count: 10,
            }],
            gids: Vec::new(),
        };
        assert_eq!(map.to_host(IdKind::Uid, 1), Some(u32::MAX));
        assert_eq!(map.to_host(IdKind::Uid, 2), None);
        assert_eq!(map.to_host(IdKind::Gid, 0), None);
    }
}
