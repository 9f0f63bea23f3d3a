//! An instruction's `--flag[=value]` words checked against the flags it
//! takes (BuildKit's `BFlags`): unknown, repeated or malformed flags are
//! errors, and docker flags skiff does not implement say so.

/// What a flag holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FlagKind {
    /// `--name=value`; the value may not be empty.
    Text,
    /// `--name`, `--name=true`, `--name=false`.
    Bool,
}

/// The flags given to one instruction, by name.
#[derive(Debug, Default)]
pub(super) struct Flags {
    values: Vec<(&'static str, String)>,
}

impl Flags {
    /// The value of a text flag, if given.
    pub fn text(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    /// Whether a bool flag was given and true.
    pub fn bool(&self, name: &str) -> bool {
        self.values.iter().any(|(n, v)| *n == name && v == "true")
    }
}

/// Checks `words` (each `--name[=value]`) for `instruction`, which takes
/// the flags in `allowed`; the names in `unsupported` are docker flags
/// skiff refuses with a message saying so.
pub(super) fn parse_flags(
    instruction: &str,
    words: &[String],
    allowed: &[(&'static str, FlagKind)],
    unsupported: &[&str],
) -> Result<Flags, String> {
    let mut flags = Flags::default();
    for word in words {
        let Some(flag) = word.strip_prefix("--") else {
            // The splitter only hands over `--` words; keep the check anyway.
            return Err(format!(
                "{instruction}: flag should start with --: {}",
                shown(word)
            ));
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag, None),
        };
        if unsupported.contains(&name) {
            return Err(format!(
                "{instruction} --{name} is not supported by skiff build"
            ));
        }
        let Some(&(known, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
            return Err(format!(
                "unknown flag for {instruction}: --{}",
                shown_name(name)
            ));
        };
        if flags.values.iter().any(|(n, _)| *n == known) {
            return Err(format!("duplicate flag for {instruction}: --{known}"));
        }
        let value = match (kind, value) {
            (FlagKind::Text, None | Some("")) => {
                return Err(format!(
                    "{instruction} --{known} needs a value (--{known}=...)"
                ))
            }
            (FlagKind::Text, Some(v)) => v.to_string(),
            (FlagKind::Bool, None) => "true".to_string(),
            (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                "true" => "true".to_string(),
                "false" => "false".to_string(),
                _ => {
                    return Err(format!(
                        "{instruction} --{known} expects true or false, not {}",
                        shown(v)
                    ))
                }
            },
        };
        flags.values.push((known, value));
    }
    Ok(flags)
}

fn shown(text: &str) -> String {
    super::words::shown(text)
}

/// A flag name for a message: as is when it is plain, quoted otherwise.
fn shown_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        name.to_string()
    } else {
        shown(name)
    }
}
