//! The skiff flags on the kernel command line.

use skiff_proto::{CMDLINE_DEBUG, CMDLINE_PROBE};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Log to /dev/console.
    pub debug: bool,
    /// The accelerator probe: print the marker and power off.
    pub probe: bool,
}

pub fn parse(cmdline: &str) -> Flags {
    let mut flags = Flags::default();
    for word in cmdline.split_ascii_whitespace() {
        if word == CMDLINE_DEBUG {
            flags.debug = true;
        } else if word == CMDLINE_PROBE {
            flags.probe = true;
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_flags_among_others() {
        assert_eq!(parse("console=ttyS0 quiet\n"), Flags::default());
        assert_eq!(
            parse("console=hvc0 skiff.debug=1 panic=-1"),
            Flags {
                debug: true,
                probe: false
            }
        );
        assert_eq!(
            parse("skiff.probe=1 skiff.debug=1"),
            Flags {
                debug: true,
                probe: true
            }
        );
        assert_eq!(parse("skiff.debug=10 xskiff.probe=1"), Flags::default());
    }
}
