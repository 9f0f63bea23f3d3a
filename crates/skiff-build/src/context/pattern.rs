//! The two pattern languages of a build context: `.dockerignore` lines
//! (moby/patternmatcher, where `**` spans directories and a pattern that
//! matches a directory covers everything under it) and COPY source globs
//! (Go's `filepath.Match`, one path component at a time).
//!
//! Both are translated to regular expressions the way moby does it, so that
//! the corner cases (`[...]` classes, `\` escapes, `**` anywhere) behave as
//! they do under docker and podman rather than as some other glob dialect's.

use regex::bytes::Regex;

/// One line of an ignore file, compiled.
#[derive(Debug)]
struct IgnorePattern {
    matcher: Match,
    /// A `!` line: a match re-includes instead of excluding.
    exclusion: bool,
}

/// patternmatcher's match types: the three plain ones are cheaper than a
/// regex and are what most ignore files consist of.
#[derive(Debug)]
enum Match {
    /// No wildcard at all: the path itself.
    Exact(Vec<u8>),
    /// `dir/**`: anything starting with `dir/`.
    Prefix(Vec<u8>),
    /// `**/name` (or `**name`): anything ending with it, or `name` itself.
    Suffix(Vec<u8>),
    Regex(Regex),
}

impl Match {
    fn is_match(&self, path: &[u8]) -> bool {
        match self {
            Match::Exact(p) => path == p.as_slice(),
            Match::Prefix(p) => path.starts_with(p),
            Match::Suffix(s) => path.ends_with(s) || (s.first() == Some(&b'/') && path == &s[1..]),
            Match::Regex(re) => re.is_match(path),
        }
    }
}

/// A malformed ignore pattern; the caller adds where it came from.
#[derive(Debug)]
pub(crate) struct BadPattern;

/// The compiled rules of one ignore file. Matching follows
/// `MatchesOrParentMatches`: for each pattern in order, a path matches when
/// the pattern matches it or any of its parent directories; the last
/// matching pattern decides.
#[derive(Debug, Default)]
pub(crate) struct IgnoreMatcher {
    patterns: Vec<IgnorePattern>,
    has_exclusions: bool,
}

impl IgnoreMatcher {
    /// Parses an ignore file's text: one pattern a line, `#` comments, blank
    /// lines skipped, leading/trailing spaces trimmed, `!` re-includes.
    /// A malformed line is reported by its 1-based number and text.
    pub(crate) fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut m = IgnoreMatcher::default();
        // A byte-order mark is not part of the first pattern.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, line) in text.lines().enumerate() {
            let raw = line.trim();
            if raw.is_empty() || raw.starts_with('#') {
                continue;
            }
            let (exclusion, body) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, raw),
            };
            if body.is_empty() {
                return Err((i + 1, raw.to_owned()));
            }
            let mut cleaned = clean(body);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let matcher = compile_ignore(&cleaned).map_err(|_| (i + 1, raw.to_owned()))?;
            m.has_exclusions |= exclusion;
            m.patterns.push(IgnorePattern { matcher, exclusion });
        }
        Ok(m)
    }

    /// Whether there are `!` patterns: only then can something under an
    /// ignored directory come back, so only then is it worth walking into.
    pub(crate) fn has_exclusions(&self) -> bool {
        self.has_exclusions
    }

    /// The state for the children of the root: no ancestor matched anything.
    pub(crate) fn root_state(&self) -> Vec<bool> {
        vec![false; self.patterns.len()]
    }

    /// Whether `path` (relative to the context root, `/`-separated) is
    /// ignored, given `anc`: for each pattern, whether it matched one of the
    /// path's parent directories.
    pub(crate) fn ignored(&self, path: &[u8], anc: &[bool]) -> bool {
        let mut ignored = false;
        for (p, &a) in self.patterns.iter().zip(anc) {
            if a || p.matcher.is_match(path) {
                ignored = !p.exclusion;
            }
        }
        ignored
    }

    /// The state for the children of directory `path`, from its own `anc`.
    pub(crate) fn descend(&self, path: &[u8], anc: &[bool]) -> Vec<bool> {
        self.patterns
            .iter()
            .zip(anc)
            .map(|(p, &a)| a || p.matcher.is_match(path))
            .collect()
    }

    /// The state for the children of `path`, computed from the root.
    pub(crate) fn state_for(&self, path: &[u8]) -> Vec<bool> {
        let mut state = self.root_state();
        if path.is_empty() {
            return state;
        }
        let mut end = 0;
        loop {
            end = match path[end..].iter().position(|&b| b == b'/') {
                Some(i) => end + i,
                None => path.len(),
            };
            state = self.descend(&path[..end], &state);
            if end == path.len() {
                return state;
            }
            end += 1;
        }
    }

    /// Whether `path` is ignored, its parents' matches computed here.
    pub(crate) fn is_ignored(&self, path: &[u8]) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let parent = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => &path[..i],
            None => &[][..],
        };
        self.ignored(path, &self.state_for(parent))
    }
}

/// Go's `filepath.Clean` for a `/`-separated pattern: collapses `//`,
/// drops `.`, resolves `..` lexically (never above a leading `/`).
pub(crate) fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if matches!(out.last(), Some(&l) if l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

/// patternmatcher's `compile`: the pattern becomes one of the match types,
/// a regex only when it needs one. The pattern must also be valid for
/// `filepath.Match`, as patternmatcher checks.
fn compile_ignore(pattern: &str) -> Result<Match, BadPattern> {
    glob_regex(pattern)?;
    #[derive(PartialEq)]
    enum Ty {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut ty = Ty::Exact;
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        let first = i == 0;
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is `**`: the slash is eaten.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    // A trailing `**` accepts everything, as in .gitignore.
                    if ty == Ty::Exact {
                        ty = Ty::Prefix;
                    } else {
                        re.push_str(".*");
                        ty = Ty::Regex;
                    }
                } else {
                    // Any number of directories, even none.
                    re.push_str("(.*/)?");
                    ty = Ty::Regex;
                }
                if first {
                    ty = Ty::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                ty = Ty::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                ty = Ty::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    re.push('\\');
                    re.push(next);
                    ty = Ty::Regex;
                }
                None => re.push_str("\\\\"),
            },
            '[' | ']' => {
                re.push(ch);
                ty = Ty::Regex;
            }
            _ => re.push(ch),
        }
    }
    Ok(match ty {
        Ty::Exact => Match::Exact(pattern.as_bytes().to_vec()),
        // Without the trailing `**`.
        Ty::Prefix => Match::Prefix(pattern.as_bytes()[..pattern.len() - 2].to_vec()),
        // Without the leading `**`.
        Ty::Suffix => Match::Suffix(pattern.as_bytes()[2..].to_vec()),
        Ty::Regex => {
            re.push('$');
            Match::Regex(Regex::new(&re).map_err(|_| BadPattern)?)
        }
    })
}

/// Whether a COPY source component has glob characters (a `\`-escaped one
/// does not count), as buildkit's `containsWildcards` decides.
pub(crate) fn has_wildcard(component: &str) -> bool {
    let mut it = component.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => {
                it.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Go's `filepath.Match` pattern as an anchored regex: `*` any run of
/// non-separators, `?` one, `[^a-z]` classes (negated by `^` only), `\`
/// escapes. Errors where `filepath.Match` says `ErrBadPattern`.
pub(crate) fn glob_regex(pattern: &str) -> Result<Regex, BadPattern> {
    let mut re = String::from("^");
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => {
                let n = it.next().ok_or(BadPattern)?;
                re.push_str(&regex::escape(n.encode_utf8(&mut [0; 4])));
            }
            '[' => {
                re.push('[');
                if it.peek() == Some(&'^') {
                    it.next();
                    re.push('^');
                }
                let mut ranges = 0;
                loop {
                    if it.peek() == Some(&']') && ranges > 0 {
                        it.next();
                        break;
                    }
                    let lo = class_char(&mut it)?;
                    push_class_char(&mut re, lo);
                    if it.peek() == Some(&'-') {
                        it.next();
                        let hi = class_char(&mut it)?;
                        if hi < lo {
                            return Err(BadPattern);
                        }
                        re.push('-');
                        push_class_char(&mut re, hi);
                    }
                    ranges += 1;
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|_| BadPattern)
}

/// One character of a class range (`getEsc`): `-` and `]` must be escaped.
fn class_char(it: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, BadPattern> {
    match it.next().ok_or(BadPattern)? {
        '-' | ']' => Err(BadPattern),
        '\\' => it.next().ok_or(BadPattern),
        c => Ok(c),
    }
}

fn push_class_char(re: &mut String, c: char) {
    // Inside a regex class these are special; everything else is literal.
    if matches!(c, '\\' | ']' | '[' | '^' | '-' | '&' | '~') {
        re.push('\\');
    }
    re.push(c);
}
