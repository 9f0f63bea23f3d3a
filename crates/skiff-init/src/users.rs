//! The container's users and groups: `/etc/passwd` and `/etc/group` parsed
//! and an image config `User` ("", "name", "uid", "name:group", "uid:gid")
//! resolved the way docker/runc do it, so the same image gets the same ids
//! under skiff.

use std::io;
use std::path::Path;

/// One line of /etc/passwd (the fields skiff-init needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// What a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the primary gid first, then every group that
    /// lists the user as a member.
    pub groups: Vec<u32>,
    /// From passwd; None for a uid that has no entry.
    pub home: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    // Messages as docker prints them: users recognise them.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
}

/// Parses /etc/passwd, skipping comments and malformed lines (an image's
/// file is outside data: a bad line must not make every user unresolvable).
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Parses /etc/group, skipping comments and malformed lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` against the given file contents (None: the file is
/// missing, which is fine as long as only numbers are used).
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // An empty user is root, as in docker.
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let (uid, entry) = match user_part.parse::<u32>() {
        Ok(uid) => (uid, users.iter().find(|u| u.uid == uid)),
        Err(_) => {
            let e = users
                .iter()
                .find(|u| u.name == user_part)
                .ok_or_else(|| UserError::NoSuchUser(user_part.to_owned()))?;
            (e.uid, Some(e))
        }
    };
    // A numeric uid without an entry gets gid 0, as docker does.
    let mut gid = entry.map_or(0, |e| e.gid);
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::NoSuchGroup(g.to_owned()))?,
        };
    }
    let mut supplementary = vec![gid];
    if let Some(e) = entry {
        for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
            if !supplementary.contains(&g.gid) {
                supplementary.push(g.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        groups: supplementary,
        home: entry.map(|e| e.home.clone()).filter(|h| !h.is_empty()),
    })
}

/// Resolves `spec` against `<root>/etc/passwd` and `<root>/etc/group`.
pub fn resolve_in(root: &Path, spec: &str) -> Result<ResolvedUser, UserError> {
    let passwd = read_optional(&root.join("etc/passwd"))?;
    let group = read_optional(&root.join("etc/group"))?;
    resolve(spec, passwd.as_deref(), group.as_deref())
}

fn read_optional(path: &Path) -> Result<Option<String>, UserError> {
    match std::fs::read(path) {
        // Lossy: a stray non-UTF-8 byte in a GECOS field must not hide root.
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(UserError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken line
app:x:1000:1001:App,,,:/home/app:/bin/bash
nohome:x:1002:1002::
";
    const GROUP: &str = "\
root:x:0:
daemon:x:1:
wheel:x:10:root,app
appgrp:x:1001:
audio:x:29:app
staff:x:50:
";

    fn r(spec: &str) -> Result<ResolvedUser, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn empty_is_root() {
        let u = r("").unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.home.as_deref(), Some("/root"));
        assert_eq!(u.groups, vec![0, 10]);
    }

    #[test]
    fn by_name_and_by_number() {
        let by_name = r("app").unwrap();
        assert_eq!((by_name.uid, by_name.gid), (1000, 1001));
        assert_eq!(by_name.home.as_deref(), Some("/home/app"));
        assert_eq!(by_name.groups, vec![1001, 10, 29]);
        assert_eq!(r("1000").unwrap(), by_name);
    }

    #[test]
    fn unknown_numeric_uid_gets_gid_zero() {
        let u = r("4242").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.groups.clone(), u.home),
            (4242, 0, vec![0], None)
        );
    }

    #[test]
    fn explicit_group_by_name_and_number() {
        let u = r("app:staff").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert_eq!(u.groups, vec![50, 10, 29]);
        let u = r("1000:77").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 77));
        let u = r("daemon:").unwrap();
        assert_eq!((u.uid, u.gid), (1, 1));
    }

    #[test]
    fn unknown_names_are_errors_with_docker_messages() {
        assert_eq!(
            r("nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:nogroup").unwrap_err().to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
    }

    #[test]
    fn missing_files_are_fine_for_numbers() {
        let u = resolve("123:456", None, None).unwrap();
        assert_eq!((u.uid, u.gid, u.groups), (123, 456, vec![456]));
        assert_eq!(resolve("", None, None).unwrap().uid, 0);
        assert!(matches!(
            resolve("root", None, None),
            Err(UserError::NoSuchUser(_))
        ));
        assert!(matches!(
            resolve("0:wheel", Some(PASSWD), None),
            Err(UserError::NoSuchGroup(_))
        ));
    }

    #[test]
    fn empty_home_is_none() {
        assert_eq!(r("nohome").unwrap().home, None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let p = parse_passwd("a:x:notanumber:0::/:\nb:x:5:6::/b:/bin/sh\n::\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "b");
        let g = parse_group("x\nstaff:x:50:a, b ,,c\n");
        assert_eq!(
            g,
            vec![GroupEntry {
                name: "staff".into(),
                gid: 50,
                members: vec!["a".into(), "b".into(), "c".into()]
            }]
        );
    }

    #[test]
    fn reads_files_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve_in(dir.path(), "7").unwrap().uid, 7);
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        assert_eq!(
            resolve_in(dir.path(), "app").unwrap().groups,
            vec![1001, 10, 29]
        );
    }
}
