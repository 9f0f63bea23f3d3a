//! From text to logical lines, as BuildKit's parser reads them: parser
//! directives at the top, comments, blank lines and line continuations, and
//! the raw lines of heredoc bodies, which the caller asks for once it knows
//! an instruction has heredocs.

/// The directives BuildKit knows. Any other `# key=value` is a comment and,
/// as in BuildKit, ends the directives.
const KNOWN_DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// An instruction's text: its first line and the physical lines it spans
/// joined (continuation characters removed, comment lines dropped).
#[derive(Debug)]
pub(super) struct Logical {
    /// The 1-based line it starts on.
    pub line: usize,
    /// The joined text, not trimmed.
    pub text: String,
}

/// Reads a Containerfile's text one physical line at a time, lazily, so a
/// huge file costs only what is read before an error stops it.
pub(super) struct Scanner<'a> {
    /// What is not read yet.
    rest: &'a str,
    /// Whether `rest` still holds a line (a final line may lack its `\n`).
    more: bool,
    /// Physical lines read so far (the number of the last one read).
    read: usize,
    /// The escape and continuation character.
    escape: char,
}

impl<'a> Scanner<'a> {
    /// Starts reading `text`, applying the parser directives at its top.
    /// An error is (line, message).
    pub fn new(text: &'a str) -> Result<Self, (usize, String)> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut scanner = Scanner {
            rest: text,
            more: !text.is_empty(),
            read: 0,
            escape: '\\',
        };
        scanner.escape = read_directives(text)?;
        Ok(scanner)
    }

    /// The escape character (`\` unless `# escape=` said otherwise).
    pub fn escape(&self) -> char {
        self.escape
    }

    /// The next physical line without its line ending (`\n`, and one `\r`
    /// before it, as Go's line scanner drops).
    fn physical(&mut self) -> Option<&'a str> {
        if !self.more {
            return None;
        }
        let (line, rest) = match self.rest.find('\n') {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, ""),
        };
        self.more = !rest.is_empty();
        self.rest = rest;
        self.read += 1;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }

    /// The next instruction's text, or `None` at the end of the file. Blank
    /// and comment lines are skipped; inside a continuation, comment lines
    /// and blank lines are dropped too, as BuildKit does. A continuation at
    /// the end of the file simply ends the instruction.
    pub fn next_logical(&mut self) -> Option<Logical> {
        loop {
            let raw = self.physical()?;
            let start = self.read;
            let first = if is_comment(raw) {
                ""
            } else {
                raw.trim_start()
            };
            let (text, mut done) = self.trim_continuation(first);
            if done && text.is_empty() {
                continue;
            }
            let mut text = text.to_string();
            while !done {
                let Some(raw) = self.physical() else { break };
                if is_comment(raw) || raw.trim_start().is_empty() {
                    continue;
                }
                let (part, end) = self.trim_continuation(raw);
                text.push_str(part);
                done = end;
            }
            return Some(Logical { line: start, text });
        }
    }

    /// Splits a trailing continuation off `line`: the escape character
    /// followed only by spaces and tabs. Returns the line without it and
    /// whether the instruction ends here.
    fn trim_continuation<'l>(&self, line: &'l str) -> (&'l str, bool) {
        let trimmed = line.trim_end_matches([' ', '\t']);
        match trimmed.strip_suffix(self.escape) {
            Some(before) => (before, false),
            None => (line, true),
        }
    }

    /// Reads a heredoc body up to its terminator: a line that is exactly
    /// `name` (after leading tabs, for `<<-`). Returns the raw body, each
    /// line followed by `\n`, or `None` if the file ends first.
    pub fn read_heredoc(&mut self, name: &str, strip_tabs: bool) -> Option<String> {
        let mut body = String::new();
        loop {
            let line = self.physical()?;
            let candidate = if strip_tabs {
                line.trim_start_matches('\t')
            } else {
                line
            };
            if candidate == name {
                return Some(body);
            }
            body.push_str(line);
            body.push('\n');
        }
    }
}

/// Whether a physical line is a comment: `#` first, after leading whitespace.
fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Applies the parser directives at the top of `text` and returns the
/// escape character. Directives stop at the first line that is not a known
/// directive (a blank line, another comment, an instruction).
fn read_directives(text: &str) -> Result<char, (usize, String)> {
    let mut escape = '\\';
    let mut seen: Vec<String> = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
        let Some((key, value)) = directive(line) else {
            break;
        };
        if !KNOWN_DIRECTIVES.contains(&key.as_str()) {
            break;
        }
        if seen.contains(&key) {
            let message = format!("only one {key} parser directive can be used");
            return Err((index + 1, message));
        }
        if key == "escape" {
            escape = match value {
                "\\" => '\\',
                "`" => '`',
                other => {
                    let message = format!(
                        "invalid escape token {} does not match ` or \\",
                        super::words::shown(other)
                    );
                    return Err((index + 1, message));
                }
            };
        }
        seen.push(key);
    }
    Ok(escape)
}

/// Matches BuildKit's directive pattern,
/// `^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$`,
/// returning the lower-cased key and the value.
fn directive(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let rest = rest.trim_start_matches([' ', '\t']).strip_prefix('=')?;
    let spaced = rest.trim_start_matches([' ', '\t']);
    let value = spaced.trim_end_matches([' ', '\t']);
    if !value.is_empty() {
        return Some((key.to_ascii_lowercase(), value));
    }
    // `.+?` needs one character: with only blanks after `=` the regex
    // takes the last blank as the value.
    let blank = rest.get(rest.len().checked_sub(1)?..)?;
    Some((key.to_ascii_lowercase(), blank))
}
