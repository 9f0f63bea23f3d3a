//! Shell patterns for `${V#p}`, `${V%p}` and `${V/p/r}`: `*`, `?`, `[…]`
//! and escaped literals. Matching simulates the pattern as a small automaton
//! (one set of states per character), so it is linear in the value for a
//! given pattern: no backtracking for hostile input to blow up.

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// This character.
    Literal(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters, empty included.
    Star,
    /// `[…]`: one character in (or, negated, not in) these ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::Any | Token::Star => true,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// A parsed shell pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern {
    tokens: Vec<Token>,
}

/// The automaton's state after some input: for each token count matched so
/// far, the earliest start of a match that got there (`None`: not reached).
type States = Vec<Option<usize>>;

impl Pattern {
    /// Parses `text`; `escape` makes the next character literal. A `[` with
    /// no closing `]` is a literal `[`.
    pub fn parse(text: &str, escape: char) -> Pattern {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            let token = match c {
                '*' => Token::Star,
                '?' => Token::Any,
                '[' => match class(&chars, i, escape) {
                    Some((token, end)) => {
                        i = end;
                        token
                    }
                    None => Token::Literal('['),
                },
                c if c == escape => match chars.get(i) {
                    Some(&next) => {
                        i += 1;
                        Token::Literal(next)
                    }
                    None => Token::Literal(c),
                },
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Pattern { tokens }
    }

    /// The number of tokens (what matching costs per value character).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// The pattern read backwards, to match suffixes as prefixes.
    fn reversed(&self) -> Pattern {
        let mut tokens = self.tokens.clone();
        tokens.reverse();
        Pattern { tokens }
    }

    /// Follows `*` tokens, which may match nothing.
    fn close(&self, states: &mut States) {
        for i in 0..self.tokens.len() {
            if let (Token::Star, Some(start)) = (&self.tokens[i], states[i]) {
                let next = &mut states[i + 1];
                *next = Some(next.map_or(start, |n| n.min(start)));
            }
        }
    }

    /// The states after reading `c` from `states`.
    fn step(&self, states: &States, c: char) -> States {
        let mut next: States = vec![None; states.len()];
        for (i, token) in self.tokens.iter().enumerate() {
            let Some(start) = states[i] else { continue };
            if !token.accepts(c) {
                continue;
            }
            let to = if *token == Token::Star { i } else { i + 1 };
            next[to] = Some(next[to].map_or(start, |n| n.min(start)));
        }
        self.close(&mut next);
        next
    }

    /// The length of the shortest (or, `longest`, the longest) prefix of
    /// `value` the whole pattern matches.
    pub fn prefix(&self, value: &[char], longest: bool) -> Option<usize> {
        let accept = self.tokens.len();
        let mut states: States = vec![None; accept + 1];
        states[0] = Some(0);
        self.close(&mut states);
        let mut best = None;
        for len in 0..=value.len() {
            if states[accept].is_some() {
                best = Some(len);
                if !longest {
                    break;
                }
            }
            let Some(&c) = value.get(len) else { break };
            states = self.step(&states, c);
            if states.iter().all(Option::is_none) {
                break;
            }
        }
        best
    }

    /// Where the shortest (or longest) suffix the pattern matches starts.
    pub fn suffix(&self, value: &[char], longest: bool) -> Option<usize> {
        let reversed: Vec<char> = value.iter().rev().copied().collect();
        let len = self.reversed().prefix(&reversed, longest)?;
        Some(value.len() - len)
    }

    /// The leftmost match at or after `from`, longest there: (start, end).
    fn find(&self, value: &[char], from: usize) -> Option<(usize, usize)> {
        let accept = self.tokens.len();
        let mut states: States = vec![None; accept + 1];
        let mut best: Option<(usize, usize)> = None;
        for pos in from..=value.len() {
            if best.is_none() && states[0].is_none() {
                // A match may also start here.
                states[0] = Some(pos);
            }
            self.close(&mut states);
            if let Some(start) = states[accept] {
                match best {
                    Some((b, _)) if b < start => {}
                    _ => best = Some((start, pos)),
                }
            }
            if let Some((b, _)) = best {
                // Only matches starting no later than the best one can win.
                states.iter_mut().for_each(|s| {
                    if s.is_some_and(|s| s > b) {
                        *s = None;
                    }
                });
                if states.iter().all(Option::is_none) {
                    break;
                }
            }
            let Some(&c) = value.get(pos) else { break };
            states = self.step(&states, c);
        }
        best
    }

    /// `value` with the first (or every) match replaced by `with`. Empty
    /// matches next to a previous match are skipped, as Go's regexp does.
    pub fn replace(&self, value: &[char], with: &str, all: bool) -> String {
        let mut out = String::new();
        let mut pos = 0;
        let mut last_end: Option<usize> = None;
        while pos <= value.len() {
            let Some((start, end)) = self.find(value, pos) else {
                break;
            };
            if start == end && last_end == Some(start) {
                // An empty match right after a match: move on one character.
                if let Some(&c) = value.get(start) {
                    out.push(c);
                }
                pos = start + 1;
                continue;
            }
            out.extend(&value[pos..start]);
            out.push_str(with);
            last_end = Some(end);
            pos = end;
            if start == end {
                if let Some(&c) = value.get(end) {
                    out.push(c);
                }
                pos = end + 1;
            }
            if !all {
                break;
            }
        }
        if pos < value.len() {
            out.extend(&value[pos..]);
        }
        out
    }
}

/// Parses a bracket expression whose `[` is just before `start`: returns
/// the token and the index after its `]`, or `None` if it never closes.
fn class(chars: &[char], start: usize, escape: char) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i)?;
        i += 1;
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, i));
        }
        first = false;
        if c == escape {
            c = *chars.get(i)?;
            i += 1;
        }
        let is_range = chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']');
        if is_range {
            let mut hi = *chars.get(i + 1)?;
            i += 2;
            if hi == escape {
                hi = *chars.get(i)?;
                i += 1;
            }
            ranges.push((c, hi));
        } else {
            ranges.push((c, c));
        }
    }
}
