//! mount(8)-style option lists turned into mount(2) flags and data.

use rustix::mount::MountFlags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MountFlags,
    /// Options the VFS does not know, passed to the filesystem ("size=64m").
    pub data: String,
    /// "bind" or "rbind": `source` is a path, not a device.
    pub bind: bool,
    /// "rbind": with the mounts below `source`.
    pub recursive: bool,
}

/// Parses options such as `["ro", "nosuid", "size=1m"]`. Options may also
/// come comma-joined in one string, as in fstab.
impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MountFlags::empty(),
            data: String::new(),
            bind: false,
            recursive: false,
        }
    }
}

pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match opt {
            "ro" => o.flags |= MountFlags::RDONLY,
            "rw" => o.flags -= MountFlags::RDONLY,
            "nosuid" => o.flags |= MountFlags::NOSUID,
            "suid" => o.flags -= MountFlags::NOSUID,
            "nodev" => o.flags |= MountFlags::NODEV,
            "dev" => o.flags -= MountFlags::NODEV,
            "noexec" => o.flags |= MountFlags::NOEXEC,
            "exec" => o.flags -= MountFlags::NOEXEC,
            "relatime" => o.flags |= MountFlags::RELATIME,
            "noatime" => o.flags |= MountFlags::NOATIME,
            "nodiratime" => o.flags |= MountFlags::NODIRATIME,
            "strictatime" => o.flags |= MountFlags::STRICTATIME,
            "sync" => o.flags |= MountFlags::SYNCHRONOUS,
            "dirsync" => o.flags |= MountFlags::DIRSYNC,
            "defaults" => {}
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            other => data.push(other),
        }
    }
    o.data = data.join(",");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> MountOptions {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data() {
        let o = p(&[
            "ro", "nosuid", "nodev", "noexec", "relatime", "size=64m", "mode=755",
        ]);
        assert_eq!(
            o.flags,
            MountFlags::RDONLY
                | MountFlags::NOSUID
                | MountFlags::NODEV
                | MountFlags::NOEXEC
                | MountFlags::RELATIME
        );
        assert_eq!(o.data, "size=64m,mode=755");
        assert!(!o.bind);
    }

    #[test]
    fn binds() {
        let o = p(&["bind", "ro"]);
        assert!(o.bind && !o.recursive);
        assert_eq!(o.flags, MountFlags::RDONLY);
        let o = p(&["rbind"]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.data, "");
    }

    #[test]
    fn comma_joined_and_negations() {
        let o = p(&["ro,noexec", "rw", "trans=virtio,version=9p2000.L"]);
        assert_eq!(o.flags, MountFlags::NOEXEC);
        assert_eq!(o.data, "trans=virtio,version=9p2000.L");
        assert_eq!(p(&[]), MountOptions::default());
    }
}
