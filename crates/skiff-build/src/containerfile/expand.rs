//! Variable expansion and quote removal, as docker's shell lexer
//! (`frontend/dockerfile/shell/lex.go`) does for the instructions that
//! expand variables: `'…'` is literal, `"…"` expands `$`, the escape
//! character escapes, and `$V`, `${V}` and the `${V…}` modifiers expand.

use super::pattern::Pattern;

/// How deep `${…}` may nest (`${a:-${b:-…}}`) before expansion gives up;
/// far beyond any real file, and it keeps hostile input off the stack's end.
const MAX_DEPTH: usize = 64;

/// The most pattern tokens × value characters one `${V#p}`, `${V%p}` or
/// `${V/p/r}` may cost: matching is linear in each, but both can be megabytes.
const MAX_PATTERN_WORK: usize = 64 * 1024 * 1024;

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// A quote (`single-quote`, `double-quote`) or a stop character is never closed.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(String),
    /// `${…` with no closing brace.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${V/pattern` with no `/` before the end.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${:…}`, `${{…`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${V` followed by something that is no modifier (`${V:#x}`, `${V!}`).
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${V?message}` or `${V:?message}` with V unset (or empty).
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The word after `?`, or docker's default message.
        message: String,
    },
    /// A pattern substitution on a pattern and value too large to match.
    #[error(
        "pattern substitution too large ({pattern} pattern characters, {value} value characters)"
    )]
    TooLarge {
        /// The pattern's length in characters.
        pattern: usize,
        /// The value's length in characters.
        value: usize,
    },
    /// `${…}` nested more than this many levels deep.
    #[error("variable substitution nested more than {0} levels deep")]
    TooDeep(usize),
}

/// Expands words with docker's rules. `lookup` says what a variable holds
/// (`None`: unset, which expands to nothing).
pub struct Expander<'a> {
    /// The escape character of the file (`\` or `` ` ``).
    pub escape: char,
    /// The variables in scope at the step being expanded.
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Expander<'_> {
    /// One word (docker's `ProcessWord`): quotes removed, escapes applied,
    /// variables expanded; whitespace does not split. An unset variable is "".
    pub fn word(&self, raw: &str) -> Result<String, ExpandError> {
        let mut lexer = Lexer::new(raw, self.escape, self.lookup, Mode::default());
        lexer.run().map(|(word, _)| word)
    }

    /// Several words (docker's `ProcessWords`): split on whitespace that is
    /// neither quoted nor escaped, including whitespace a variable expands
    /// to. Quotes group (`"a b"` is one word); an empty `""` makes no word.
    pub fn words(&self, raw: &str) -> Result<Vec<String>, ExpandError> {
        let mut lexer = Lexer::new(raw, self.escape, self.lookup, Mode::default());
        lexer.run().map(|(_, words)| words)
    }

    /// A heredoc body whose delimiter was not quoted: variables expand as in
    /// a shell here-document; quotes are ordinary characters, and the escape
    /// character only escapes `$` and itself (so scripts keep their `\n`).
    pub fn heredoc(&self, body: &str) -> Result<String, ExpandError> {
        let mode = Mode {
            heredoc: true,
            ..Mode::default()
        };
        let mut lexer = Lexer::new(body, self.escape, self.lookup, mode);
        lexer.run().map(|(word, _)| word)
    }
}

/// Lexer options, as docker's `Lex` fields.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mode {
    /// Keep the quote characters in the result (`RawQuotes`).
    pub raw_quotes: bool,
    /// Keep the escape characters in the result (`RawEscapes`).
    pub raw_escapes: bool,
    /// Heredoc body rules: quotes are not special (see [`Expander::heredoc`]).
    pub heredoc: bool,
}

/// One pass over a word.
pub(super) struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    mode: Mode,
    depth: usize,
    /// How many quote characters acted as quotes (heredoc delimiters use it).
    pub quotes_used: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer over `text`.
    pub fn new(
        text: &str,
        escape: char,
        lookup: &'a dyn Fn(&str) -> Option<String>,
        mode: Mode,
    ) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            lookup,
            mode,
            depth: 0,
            quotes_used: 0,
        }
    }

    /// The whole text: the single-word result and the split words.
    pub fn run(&mut self) -> Result<(String, Vec<String>), ExpandError> {
        let raw = self.mode.raw_escapes;
        self.until(None, raw)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// Reads up to `stop` (consumed) or the end (`stop` = None), as docker's
    /// `processStopOn`.
    fn until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExpandError::TooDeep(MAX_DEPTH));
        }
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                self.depth -= 1;
                return Ok((result, words.finish()));
            }
            let quotes = !self.mode.heredoc;
            if ch == '$' {
                let value = self.dollar()?;
                words.add_str(&value);
                result.push_str(&value);
            } else if quotes && ch == '\'' {
                let value = self.single_quote()?;
                words.add_raw_str(&value);
                result.push_str(&value);
            } else if quotes && ch == '"' {
                let value = self.double_quote()?;
                words.add_raw_str(&value);
                result.push_str(&value);
            } else {
                self.pos += 1;
                if ch != self.escape {
                    words.add_char(ch);
                    result.push(ch);
                    continue;
                }
                if self.mode.heredoc {
                    // As in a here-document: only `$` and the escape itself.
                    match self.peek() {
                        Some(next) if next == '$' || next == self.escape => {
                            self.pos += 1;
                            result.push(next);
                        }
                        _ => result.push(ch),
                    }
                    continue;
                }
                if raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                // An escape at the very end is dropped.
                let Some(next) = self.next() else { break };
                words.add_raw_char(next);
                result.push(next);
            }
        }
        if let Some(stop) = stop {
            return Err(ExpandError::Unterminated(stop.to_string()));
        }
        self.depth -= 1;
        Ok((result, words.finish()))
    }

    /// `'…'`: everything literal up to the next `'`, which cannot be escaped.
    fn single_quote(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        self.quotes_used += 2;
        let mut result = String::new();
        if self.mode.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => return Err(ExpandError::Unterminated("single-quote".into())),
                Some('\'') => {
                    if self.mode.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// `"…"`: literal except `$`, and the escape character before `"`, `$`
    /// or itself; any other escape stays as it is.
    fn double_quote(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        self.quotes_used += 2;
        let mut result = String::new();
        if self.mode.raw_quotes {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(ExpandError::Unterminated("double-quote".into())),
                Some('"') => {
                    self.pos += 1;
                    if self.mode.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.dollar()?),
                Some(ch) => {
                    self.pos += 1;
                    if ch != self.escape {
                        result.push(ch);
                        continue;
                    }
                    if self.mode.raw_escapes {
                        result.push(ch);
                    }
                    match self.peek() {
                        // An escape right at the end is dropped.
                        None => continue,
                        Some(next) if next == '"' || next == '$' || next == self.escape => {
                            self.pos += 1;
                            result.push(next);
                        }
                        Some(_) => result.push(ch),
                    }
                }
            }
        }
    }

    /// A name after `$`: letters, digits and `_`; a leading digit reads only
    /// digits (`$1`); one special parameter (`$@`, `$?`, …) alone.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.pos += 1;
            name.push(ch);
        }
        name
    }

    /// `$…` at `pos`.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            None => Err(ExpandError::MissingBrace),
            Some('}') => Ok(self.get(&name).unwrap_or_default()),
            Some(':') => match self.next() {
                None => Err(ExpandError::MissingBrace),
                Some(op @ ('-' | '+' | '?')) => self.modifier(&name, op, true),
                Some(op) => Err(ExpandError::UnsupportedModifier(format!(":{op}"))),
            },
            Some(op @ ('-' | '+' | '?' | '#' | '%')) => self.modifier(&name, op, false),
            Some('/') => self.replace(&name),
            Some(op) => Err(ExpandError::UnsupportedModifier(op.to_string())),
        }
    }

    /// Reads a `${…}` operand up to its `}`.
    fn operand(&mut self, raw_escapes: bool) -> Result<String, ExpandError> {
        match self.until(Some('}'), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(ExpandError::Unterminated(_)) if self.peek().is_none() => {
                Err(ExpandError::MissingBrace)
            }
            Err(e) => Err(e),
        }
    }

    /// `${V-w}`, `${V+w}`, `${V?w}` (with `:`: empty counts as unset) and
    /// the pattern trims `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`.
    fn modifier(
        &mut self,
        name: &str,
        op: char,
        null_is_unset: bool,
    ) -> Result<String, ExpandError> {
        // Patterns keep their escapes, so `\*` stays a literal star.
        let pattern = op == '#' || op == '%';
        let word = self.operand(pattern)?;
        let value = self.get(name);
        let unset = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            '-' if unset => Ok(word),
            '-' => Ok(value.unwrap_or_default()),
            '+' if unset => Ok(String::new()),
            '+' => Ok(word),
            '?' if unset => {
                let message = match (&value, word.is_empty()) {
                    (_, false) => word,
                    (None, true) => "is not allowed to be unset".into(),
                    (Some(_), true) => "is not allowed to be empty".into(),
                };
                Err(ExpandError::Required {
                    name: name.to_string(),
                    message,
                })
            }
            '?' => Ok(value.unwrap_or_default()),
            _ => {
                let value = value.unwrap_or_default();
                let (greedy, word) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let pattern = Pattern::parse(word, self.escape);
                let chars: Vec<char> = value.chars().collect();
                affordable(&pattern, &chars)?;
                Ok(if op == '#' {
                    let cut = pattern.prefix(&chars, greedy).unwrap_or(0);
                    chars[cut..].iter().collect()
                } else {
                    let keep = pattern.suffix(&chars, greedy).unwrap_or(chars.len());
                    chars[..keep].iter().collect()
                })
            }
        }
    }

    /// `${V/pattern/replacement}` (first match) and `${V//…}` (all), the
    /// longest match at the leftmost place, as docker's greedy regexp.
    fn replace(&mut self, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = match self.until(Some('/'), true) {
            Ok((word, _)) => word,
            Err(ExpandError::Unterminated(_)) if self.peek().is_none() => {
                return Err(ExpandError::MissingSlash)
            }
            Err(e) => return Err(e),
        };
        let replacement = self.operand(false)?;
        let value: Vec<char> = self.get(name).unwrap_or_default().chars().collect();
        let pattern = Pattern::parse(&pattern, self.escape);
        affordable(&pattern, &value)?;
        Ok(pattern.replace(&value, &replacement, all))
    }
}

/// Refuses a match whose work (pattern × value) is beyond [`MAX_PATTERN_WORK`].
fn affordable(pattern: &Pattern, value: &[char]) -> Result<(), ExpandError> {
    let work = (pattern.len() + 1).saturating_mul(value.len());
    if work > MAX_PATTERN_WORK {
        return Err(ExpandError::TooLarge {
            pattern: pattern.len(),
            value: value.len(),
        });
    }
    Ok(())
}

/// Collects split words as docker's `wordsStruct`: characters from
/// variables and plain text split on whitespace, quoted or escaped ones never.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if !ch.is_whitespace() {
            self.add_raw_char(ch);
        } else if self.in_word && !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
            self.in_word = false;
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, text: &str) {
        text.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}
