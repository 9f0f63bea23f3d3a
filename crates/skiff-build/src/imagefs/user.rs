//! `USER` and `COPY --chown` names to numbers, from the image's own
//! /etc/passwd and /etc/group (as docker does: never the host's).

use super::ImageFs;

/// Why a user or group spec could not be turned into numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// No such name in the image's /etc/passwd (docker's wording).
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// No such name in the image's /etc/group.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    /// An empty user, or more than one `:`.
    #[error("invalid user specification {0:?}")]
    Invalid(String),
}

/// A `keep` for [`ImageFs::load`] that holds what [`lookup_user`] reads.
pub fn user_files(path: &str, _size: u64) -> bool {
    matches!(path, "/etc/passwd" | "/etc/group")
}

/// `USER user[:group]`: numbers pass through; a name comes from the
/// image's /etc/passwd, and its primary group too when no group is given;
/// a number without a passwd entry gets group 0 (docker's rules). The tree
/// must have been loaded keeping [`user_files`].
pub fn lookup_user(fs: &ImageFs, user: &str) -> Result<(u32, u32), UserError> {
    lookup(fs, user, false)
}

/// `COPY --chown=user[:group]`: as [`lookup_user`], except that a number
/// without a group uses the same number as the group (buildkit's rules).
pub fn lookup_chown(fs: &ImageFs, user: &str) -> Result<(u32, u32), UserError> {
    lookup(fs, user, true)
}

fn lookup(fs: &ImageFs, spec: &str, chown: bool) -> Result<(u32, u32), UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((_, g)) if g.contains(':') => return Err(UserError::Invalid(spec.into())),
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(UserError::Invalid(spec.into()));
    }
    let passwd = file(fs, "/etc/passwd");
    // (uid, primary gid) from passwd: name:password:uid:gid:…
    let entry = |pred: &dyn Fn(&[&str]) -> bool| -> Option<(u32, u32)> {
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find_map(|f| {
                if f.len() >= 4 && pred(&f) {
                    Some((f[2].parse().ok()?, f[3].parse().ok()?))
                } else {
                    None
                }
            })
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => {
            let from_passwd = entry(&|f| f[2] == user).map(|(_, g)| g);
            let fallback = if chown { uid } else { 0 };
            (uid, from_passwd.unwrap_or(fallback))
        }
        Err(_) => entry(&|f| f[0] == user).ok_or_else(|| UserError::NoUser(user.into()))?,
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => file(fs, "/etc/group")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| UserError::NoGroup(g.into()))?,
        },
    };
    Ok((uid, gid))
}

/// The text of a kept file, through symlinks; empty when absent.
fn file(fs: &ImageFs, path: &str) -> String {
    fs.resolve(path, true)
        .and_then(|p| fs.content(&p))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}
