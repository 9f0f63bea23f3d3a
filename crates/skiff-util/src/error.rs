//! Errors as one line for the places that hand a library error on as text
//! (the monitor's ready pipe, a registry retry decision).

/// `e` and each of its causes, joined with ": ", a cause left out when the
/// text before already says it.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct Open(std::io::Error);

    impl std::fmt::Display for Open {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("opening /x")
        }
    }

    impl std::error::Error for Open {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_follow_once() {
        let e = Open(std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            super::chain(&e),
            "opening /x: No such file or directory (os error 2)"
        );
        let io = std::io::Error::other("plain");
        assert_eq!(super::chain(&io), "plain");
    }
}
