//! A process's environment: the spec's KEY=VALUE list plus the variables a
//! container runtime always provides when the image did not set them.

use crate::executable::DEFAULT_PATH;

/// `env` as (key, value) pairs with PATH, HOME, HOSTNAME and (with a
/// terminal) TERM added when absent. Entries without '=' are dropped: execve
/// would pass them on, but no program can read them by name.
pub fn with_defaults(
    env: &[String],
    home: &str,
    hostname: &str,
    terminal: bool,
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::with_capacity(env.len() + 4);
    for entry in env {
        let Some((k, v)) = entry.split_once('=') else {
            continue;
        };
        // A later duplicate wins, as with `docker run -e` overriding the image.
        if let Some(slot) = vars.iter_mut().find(|(key, _)| key == k) {
            slot.1 = v.to_owned();
        } else {
            vars.push((k.to_owned(), v.to_owned()));
        }
    }
    let mut add = |k: &str, v: &str| {
        if !vars.iter().any(|(key, _)| key == k) {
            vars.push((k.to_owned(), v.to_owned()));
        }
    };
    add("PATH", DEFAULT_PATH);
    add("HOME", home);
    add("HOSTNAME", hostname);
    if terminal {
        add("TERM", "xterm");
    }
    vars
}

/// The value of `key` in a KEY=VALUE list.
pub fn lookup<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn adds_missing_defaults() {
        let env = with_defaults(&s(&["A=1"]), "/root", "box", false);
        assert_eq!(lookup(&env, "A"), Some("1"));
        assert_eq!(lookup(&env, "PATH"), Some(DEFAULT_PATH));
        assert_eq!(lookup(&env, "HOME"), Some("/root"));
        assert_eq!(lookup(&env, "HOSTNAME"), Some("box"));
        assert_eq!(lookup(&env, "TERM"), None);
        assert_eq!(
            lookup(&with_defaults(&[], "/", "h", true), "TERM"),
            Some("xterm")
        );
    }

    #[test]
    fn keeps_given_values() {
        let env = with_defaults(
            &s(&["PATH=/x", "HOME=/h", "TERM=dumb", "HOSTNAME=mine", "EMPTY="]),
            "/root",
            "box",
            true,
        );
        assert_eq!(lookup(&env, "PATH"), Some("/x"));
        assert_eq!(lookup(&env, "HOME"), Some("/h"));
        assert_eq!(lookup(&env, "TERM"), Some("dumb"));
        assert_eq!(lookup(&env, "HOSTNAME"), Some("mine"));
        assert_eq!(lookup(&env, "EMPTY"), Some(""));
        assert_eq!(env.len(), 5);
    }

    #[test]
    fn later_duplicates_win_and_junk_is_dropped() {
        let env = with_defaults(&s(&["A=1", "junk", "A=2=3"]), "/", "h", false);
        assert_eq!(lookup(&env, "A"), Some("2=3"));
        assert!(env.iter().all(|(k, _)| k != "junk"));
    }
}
