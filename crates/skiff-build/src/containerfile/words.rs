//! Splitting an instruction's text into its parts, the way BuildKit's
//! parser does before any expansion: the instruction name, the leading
//! `--flags`, whitespace-separated words, quote-aware words (ENV, LABEL,
//! ARG) and JSON arrays.

/// Docker's `reWhitespace`, `[\t\v\f\r ]`: what separates words.
pub(super) fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// An instruction's line taken apart.
#[derive(Debug)]
pub(super) struct Split<'a> {
    /// The instruction name as written (any case).
    pub name: &'a str,
    /// The leading `--flag[=value]` words, quotes removed, `--` left out.
    pub flags: Vec<String>,
    /// The rest, trimmed.
    pub args: &'a str,
}

/// Splits a logical line into name, flags and arguments.
pub(super) fn split_command(line: &str) -> Split<'_> {
    let line = line.trim();
    let Some(end) = line.find(is_blank) else {
        return Split {
            name: line,
            flags: Vec::new(),
            args: "",
        };
    };
    let rest = line[end..].trim_start_matches(is_blank);
    let (args, flags) = extract_flags(rest);
    Split {
        name: &line[..end],
        flags,
        args: args.trim(),
    }
}

/// Where a word scanner is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between words.
    Blank,
    /// In a word, outside quotes.
    Word,
    /// Inside a quote opened by this character.
    Quote(char),
}

/// Takes the `--flag` words off the front of `line` (BuildKit's
/// `extractBuilderFlags`): quotes are removed and `\` escapes, always `\`
/// whatever the escape directive says, as BuildKit does. A bare `--` ends
/// the flags. Returns the rest of the line and the flags.
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    let mut flags = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Blank;
    let mut chars = line.char_indices();
    while let Some((pos, ch)) = chars.next() {
        if phase == Phase::Blank {
            if ch.is_whitespace() {
                continue;
            }
            if !line[pos..].starts_with("--") {
                return (&line[pos..], flags);
            }
            phase = Phase::Word;
        }
        if let Phase::Quote(quote) = phase {
            if ch == quote {
                phase = Phase::Word;
            } else if ch == '\\' {
                match chars.next() {
                    Some((_, next)) => word.push(next),
                    None => phase = Phase::Word,
                }
            } else {
                word.push(ch);
            }
            continue;
        }
        if ch.is_whitespace() {
            phase = Phase::Blank;
            if word == "--" {
                return (&line[pos..], flags);
            }
            if blank_ok || !word.is_empty() {
                flags.push(std::mem::take(&mut word));
            }
            blank_ok = false;
        } else if ch == '\'' || ch == '"' {
            phase = Phase::Quote(ch);
            blank_ok = true;
        } else if ch == '\\' {
            // A `\` at the very end is dropped.
            if let Some((_, next)) = chars.next() {
                word.push(next);
            }
        } else {
            word.push(ch);
        }
    }
    if phase != Phase::Blank && word != "--" && (blank_ok || !word.is_empty()) {
        flags.push(word);
    }
    ("", flags)
}

/// Splits on runs of blanks (BuildKit's `parseStringsWhitespaceDelimited`):
/// quotes mean nothing here, they are removed later, word by word.
pub(super) fn split_blank(args: &str) -> Vec<String> {
    args.split(is_blank)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits into words that keep their quotes and escapes (BuildKit's
/// `parseWords`, used by ENV, LABEL and ARG): whitespace inside quotes or
/// after the escape character does not split. An escape at the very end is
/// dropped.
pub(super) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Blank;
    let mut chars = rest.chars();
    while let Some(ch) = chars.next() {
        if phase == Phase::Blank {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                // Inside '…' the escape character is an ordinary one.
                if ch == escape && quote != '\'' {
                    match chars.next() {
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                        }
                        None => phase = Phase::Word,
                    }
                    continue;
                }
                word.push(ch);
            }
            _ => {
                if ch.is_whitespace() {
                    phase = Phase::Blank;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if let Some(next) = chars.next() {
                        word.push(ch);
                        word.push(next);
                    }
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if phase != Phase::Blank && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// What the arguments are as a JSON array.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Json {
    /// A JSON array of strings: the exec form.
    Strings(Vec<String>),
    /// Not a JSON array: the shell form, as docker falls back to.
    NotJson,
}

/// Reads `args` as a JSON array of strings. A valid JSON array holding
/// anything but strings is an error, as in docker; text that is not a valid
/// JSON array at all is [`Json::NotJson`].
pub(super) fn parse_json_array(args: &str) -> Result<Json, String> {
    let text = args.trim_start();
    if !text.starts_with('[') {
        return Ok(Json::NotJson);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(text) else {
        return Ok(Json::NotJson);
    };
    let mut strings = Vec::with_capacity(values.len());
    for value in values {
        match value {
            serde_json::Value::String(s) => strings.push(s),
            _ => {
                return Err(
                    "when using JSON array syntax, arrays must be comprised of strings only"
                        .to_string(),
                )
            }
        }
    }
    Ok(Json::Strings(strings))
}

/// Quotes user text for an error message: escaped (so the message stays on
/// one line) and cut to a readable length.
pub(super) fn shown(text: &str) -> String {
    format!("\"{}\"", escaped(text))
}

/// User text for a message without quotes: control characters and quotes
/// escaped, cut after 60 characters.
pub(super) fn escaped(text: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}
