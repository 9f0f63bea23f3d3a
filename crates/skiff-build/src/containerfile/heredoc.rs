//! Heredocs as BuildKit finds and uses them: which words of a RUN/COPY/ADD
//! line open one (`<<EOF`, `<<-EOF`, `<<'EOF'`), tab stripping, and how a
//! RUN with heredocs becomes the text its shell runs.

use super::expand::{Lexer, Mode};

/// A heredoc named on an instruction's line, with its body as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawHeredoc {
    /// The delimiter, quotes removed.
    pub name: String,
    /// `<<-`: leading tabs are stripped from the body and the terminator.
    pub strip_tabs: bool,
    /// The delimiter had no quotes: the body is expanded (COPY/ADD).
    pub expand: bool,
    /// The body exactly as in the file, each line ending in `\n`.
    pub raw: String,
}

impl RawHeredoc {
    /// The public form: the body with tabs stripped for `<<-`.
    pub fn public(&self) -> super::Heredoc {
        super::Heredoc {
            name: self.name.clone(),
            body: if self.strip_tabs {
                strip_tabs(&self.raw)
            } else {
                self.raw.clone()
            },
            expand: self.expand,
            strip_tabs: self.strip_tabs,
        }
    }
}

/// A heredoc opener (`<<NAME`) without its body yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Marker {
    /// The delimiter, quotes removed.
    pub name: String,
    /// It was `<<-NAME`.
    pub strip_tabs: bool,
    /// The delimiter had no quotes.
    pub expand: bool,
}

fn no_variables(_: &str) -> Option<String> {
    None
}

/// The heredocs a line opens, in order (BuildKit's `heredocsFromLine`):
/// the line is split into shell words, quotes and escapes kept (so a
/// quoted `"<<EOF"` opens nothing), and each word is tried as an opener. A
/// line that does not lex (an open quote) opens none.
pub(super) fn markers_in_line(line: &str) -> Vec<Marker> {
    let mode = Mode {
        raw_quotes: true,
        raw_escapes: true,
        heredoc: false,
    };
    let mut lexer = Lexer::new(line, '\\', &no_variables, mode);
    match lexer.run() {
        Ok((_, words)) => words.iter().filter_map(|w| parse_marker(w)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether `word` opens a heredoc: BuildKit's `^(\d*)<<(-?)([^<]*)$`, the
/// part after `<<` being one shell word (quotes allowed, meaning the body
/// is not expanded).
pub(super) fn parse_marker(word: &str) -> Option<Marker> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(after) => (true, after),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let mut lexer = Lexer::new(rest, '\\', &no_variables, Mode::default());
    let (_, mut words) = lexer.run().ok()?;
    let name = words.pop()?;
    if !words.is_empty() {
        return None;
    }
    Some(Marker {
        name,
        strip_tabs,
        expand: lexer.quotes_used == 0,
    })
}

/// Removes the leading tabs of every line (`<<-`).
pub(super) fn strip_tabs(body: &str) -> String {
    body.split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// The shell text of a RUN whose shell-form command is `command` and whose
/// line opened `heredocs`, as BuildKit builds it.
pub(super) fn run_text(command: &str, heredocs: &[RawHeredoc]) -> String {
    let single = match heredocs {
        [only] => parse_marker(command).filter(|m| m.name == only.name),
        _ => None,
    };
    if let (Some(_), [only]) = (single, heredocs) {
        // `RUN <<EOF` alone: the body is the script.
        // BuildKit looks for `#!` before stripping tabs.
        let body = only.public().body;
        let script = only.raw.starts_with("#!").then(|| shebang_command(&body));
        return script.flatten().unwrap_or(body);
    }
    // Anything else: the line and the heredocs as the shell would read them
    // from a script, so the shell itself handles redirections and quoting.
    let mut text = command.to_string();
    for heredoc in heredocs {
        text.push('\n');
        text.push_str(&heredoc.raw);
        text.push_str(&heredoc.name);
    }
    text
}

/// A body starting with `#!interpreter [arg]` is run by that interpreter,
/// as the kernel would run it as a file (BuildKit mounts it as one): the
/// shell hands it over as `/dev/fd/3` from a quoted here-document, so
/// nothing in it is expanded. `None` when there is no interpreter to run.
fn shebang_command(body: &str) -> Option<String> {
    let first = body.split('\n').next()?;
    let spec = first.strip_prefix("#!")?.trim_matches([' ', '\t']);
    let (interpreter, arg) = match spec.find([' ', '\t']) {
        Some(i) => (&spec[..i], spec[i..].trim_matches([' ', '\t'])),
        None => (spec, ""),
    };
    if interpreter.is_empty() {
        return None;
    }
    // A delimiter no line of the body equals.
    let lines: std::collections::HashSet<&str> = body.split('\n').collect();
    let mut delimiter = "SKIFF_SCRIPT".to_string();
    let mut n = 0;
    while lines.contains(delimiter.as_str()) {
        n += 1;
        delimiter = format!("SKIFF_SCRIPT_{n}");
    }
    let mut text = sh_quote(interpreter);
    if !arg.is_empty() {
        text.push(' ');
        text.push_str(&sh_quote(arg));
    }
    text.push_str(&format!(" /dev/fd/3 3<<'{delimiter}'\n{body}"));
    if !body.is_empty() && !body.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&delimiter);
    text.push('\n');
    Some(text)
}

/// `text` as one single-quoted sh word.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
