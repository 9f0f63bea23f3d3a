//! Each instruction's arguments, checked and taken apart as BuildKit's
//! `instructions.Parse` does, into [`Instruction`]s (FROM into a stage
//! header). Nothing is expanded here; errors are messages without location.

use super::flags::{parse_flags, FlagKind};
use super::heredoc::{parse_marker, run_text, RawHeredoc};
use super::words::{is_blank, parse_json_array, parse_words, shown, split_blank, Json};
use super::{ArgDecl, Command, CopyInstr, CopySource, Instruction};

/// The instructions there are; each variant is the one of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    From,
    Arg,
    Env,
    Label,
    Maintainer,
    Workdir,
    User,
    StopSignal,
    Expose,
    Volume,
    Copy,
    Add,
    Run,
    Shell,
    Entrypoint,
    Cmd,
    Healthcheck,
}

/// Each instruction's name, as written upper-case in messages.
const KINDS: [(&str, Kind); 17] = [
    ("FROM", Kind::From),
    ("ARG", Kind::Arg),
    ("ENV", Kind::Env),
    ("LABEL", Kind::Label),
    ("MAINTAINER", Kind::Maintainer),
    ("WORKDIR", Kind::Workdir),
    ("USER", Kind::User),
    ("STOPSIGNAL", Kind::StopSignal),
    ("EXPOSE", Kind::Expose),
    ("VOLUME", Kind::Volume),
    ("COPY", Kind::Copy),
    ("ADD", Kind::Add),
    ("RUN", Kind::Run),
    ("SHELL", Kind::Shell),
    ("ENTRYPOINT", Kind::Entrypoint),
    ("CMD", Kind::Cmd),
    ("HEALTHCHECK", Kind::Healthcheck),
];

impl Kind {
    /// The instruction an (any-case) name stands for.
    pub fn lookup(name: &str) -> Result<Kind, String> {
        if let Some(&(_, kind)) = KINDS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Ok(kind);
        }
        if name.eq_ignore_ascii_case("ONBUILD") {
            return Err("ONBUILD is not supported by skiff build".into());
        }
        Err(format!("unknown instruction: {}", shown(name)))
    }

    /// The upper-case name.
    pub fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }

    /// Whether heredocs on its line are read (shell forms of these only).
    pub fn takes_heredocs(self) -> bool {
        matches!(self, Kind::Run | Kind::Copy | Kind::Add)
    }
}

/// What one instruction is.
#[derive(Debug)]
pub(super) enum Parsed {
    /// FROM: a new stage.
    From {
        base: String,
        platform: Option<String>,
        name: Option<String>,
    },
    /// Any other instruction.
    Step(Instruction),
}

/// Parses one instruction's flags and arguments; `heredocs` are the
/// heredocs its line opened, bodies read.
pub(super) fn parse(
    kind: Kind,
    flags: &[String],
    args: &str,
    escape: char,
    heredocs: &[RawHeredoc],
) -> Result<Parsed, String> {
    let name = kind.name();
    if !matches!(
        kind,
        Kind::From | Kind::Copy | Kind::Add | Kind::Run | Kind::Healthcheck
    ) {
        parse_flags(name, flags, &[], &[])?;
    }
    let step = match kind {
        Kind::From => return from(flags, args),
        Kind::Arg => Instruction::Arg(arg(args, escape)?),
        Kind::Env => Instruction::Env(key_values(name, args, escape)?),
        Kind::Label => Instruction::Label(key_values(name, args, escape)?),
        Kind::Maintainer => {
            let who = one_argument(name, args)?;
            Instruction::Label(vec![("maintainer".into(), literal_word(&who, escape))])
        }
        Kind::Workdir => Instruction::Workdir(one_argument(name, args)?),
        Kind::User => Instruction::User(one_argument(name, args)?),
        Kind::StopSignal => Instruction::StopSignal(one_argument(name, args)?),
        Kind::Expose => Instruction::Expose(at_least_one(name, split_blank(args))?),
        Kind::Volume => {
            let (paths, _) = list(args)?;
            if paths.iter().any(String::is_empty) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Instruction::Volume(at_least_one(name, paths)?)
        }
        Kind::Copy | Kind::Add => copy(kind, flags, args, heredocs)?,
        Kind::Run => run(flags, args, heredocs)?,
        Kind::Shell => match parse_json_array(args)? {
            Json::Strings(shell) => Instruction::Shell(at_least_one(name, shell)?),
            Json::NotJson if args.is_empty() => return Err(at_least_one_message(name)),
            Json::NotJson => return Err("SHELL requires the arguments to be in JSON form".into()),
        },
        Kind::Entrypoint => Instruction::Entrypoint(command(name, args)?),
        Kind::Cmd => Instruction::Cmd(command(name, args)?),
        Kind::Healthcheck => Instruction::Healthcheck(super::health::healthcheck(flags, args)?),
    };
    Ok(Parsed::Step(step))
}

fn at_least_one_message(name: &str) -> String {
    format!("{name} requires at least one argument")
}

fn at_least_one(name: &str, words: Vec<String>) -> Result<Vec<String>, String> {
    if words.is_empty() {
        return Err(at_least_one_message(name));
    }
    Ok(words)
}

/// The whole argument text as one raw value (WORKDIR, USER, …).
fn one_argument(name: &str, args: &str) -> Result<String, String> {
    if args.is_empty() {
        return Err(format!("{name} requires exactly one argument"));
    }
    Ok(args.to_string())
}

/// A JSON array of strings, or blank-separated words: (words, is JSON).
fn list(args: &str) -> Result<(Vec<String>, bool), String> {
    Ok(match parse_json_array(args)? {
        Json::Strings(words) => (words, true),
        Json::NotJson => (split_blank(args), false),
    })
}

/// `text` written as a word that expands to exactly `text` (single quotes,
/// and `'` as escape-quote), for MAINTAINER, which docker never expands.
fn literal_word(text: &str, escape: char) -> String {
    format!("'{}'", text.replace('\'', &format!("'{escape}''")))
}

/// `FROM [--platform=P] image [AS name]`.
fn from(flags: &[String], args: &str) -> Result<Parsed, String> {
    let flags = parse_flags("FROM", flags, &[("platform", FlagKind::Text)], &[])?;
    let words = split_blank(args);
    let (base, name) = match words.as_slice() {
        [base] => (base.clone(), None),
        [base, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            if !valid_stage_name(&lower) {
                return Err(format!(
                    "invalid name for build stage: {}, name can't start with a number or contain symbols",
                    shown(name)
                ));
            }
            (base.clone(), Some(lower))
        }
        _ => {
            return Err("FROM requires either one or three arguments (FROM image [AS name])".into())
        }
    };
    Ok(Parsed::From {
        base,
        platform: flags.text("platform"),
        name,
    })
}

/// BuildKit's `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// `ARG name[=default] ...`.
fn arg(args: &str, escape: char) -> Result<Vec<ArgDecl>, String> {
    let words = at_least_one("ARG", parse_words(args, escape))?;
    let mut decls = Vec::with_capacity(words.len());
    for word in words {
        let (name, default) = match word.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (word, None),
        };
        if name.is_empty() {
            return Err("ARG names can not be blank".into());
        }
        let odd = |c: char| c.is_whitespace() || c == escape || "'\"$".contains(c);
        if name.contains(odd) {
            return Err(format!("invalid ARG name {}", shown(&name)));
        }
        decls.push(ArgDecl { name, default });
    }
    Ok(decls)
}

/// ENV and LABEL: `k=v ...`, or the legacy `k value with spaces`.
fn key_values(name: &str, args: &str, escape: char) -> Result<Vec<(String, String)>, String> {
    let words = at_least_one(name, parse_words(args, escape))?;
    if words.first().is_some_and(|w| !w.contains('=')) {
        let Some(end) = args.find(is_blank) else {
            return Err(format!(
                "{name} must have two arguments (or be {name} key=value ...)"
            ));
        };
        let value = args[end..].trim_start_matches(is_blank);
        return Ok(vec![(args[..end].to_string(), value.to_string())]);
    }
    let mut pairs = Vec::with_capacity(words.len());
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                shown(&word)
            ));
        };
        if key.is_empty() {
            return Err(format!("{name} names can not be blank"));
        }
        pairs.push((key.to_string(), value.to_string()));
    }
    Ok(pairs)
}

/// CMD and ENTRYPOINT: exec form (`[]` included) or shell form.
fn command(name: &str, args: &str) -> Result<Command, String> {
    if args.is_empty() {
        return Err(format!(
            "{name} requires at least one argument ({name} [] clears it)"
        ));
    }
    Ok(match parse_json_array(args)? {
        Json::Strings(words) => Command::Exec(words),
        Json::NotJson => Command::Shell(args.to_string()),
    })
}

/// `RUN`: no flags; exec form, shell form, or shell form with heredocs.
fn run(flags: &[String], args: &str, heredocs: &[RawHeredoc]) -> Result<Instruction, String> {
    parse_flags(
        "RUN",
        flags,
        &[],
        &["mount", "network", "security", "device"],
    )?;
    match parse_json_array(args)? {
        Json::Strings(words) if words.is_empty() => Err(at_least_one_message("RUN")),
        Json::Strings(words) => Ok(Instruction::Run(Command::Exec(words))),
        Json::NotJson if args.is_empty() => Err(at_least_one_message("RUN")),
        Json::NotJson => Ok(Instruction::Run(Command::Shell(run_text(args, heredocs)))),
    }
}

/// COPY and ADD: flags, sources (paths or heredocs) and the destination.
fn copy(
    kind: Kind,
    flags: &[String],
    args: &str,
    heredocs: &[RawHeredoc],
) -> Result<Instruction, String> {
    let name = kind.name();
    let flags = if kind == Kind::Copy {
        let allowed = [
            ("from", FlagKind::Text),
            ("chown", FlagKind::Text),
            ("chmod", FlagKind::Text),
            ("link", FlagKind::Bool),
        ];
        parse_flags(name, flags, &allowed, &["parents", "exclude"])?
    } else {
        let allowed = [
            ("chown", FlagKind::Text),
            ("chmod", FlagKind::Text),
            ("link", FlagKind::Bool),
        ];
        let unsupported = ["checksum", "keep-git-dir", "exclude", "unpack"];
        parse_flags(name, flags, &allowed, &unsupported)?
    };
    let (mut words, json) = list(args)?;
    let Some(dest) = words.pop().filter(|_| !words.is_empty()) else {
        return Err(format!(
            "{name} requires at least two arguments, but only one was provided. Destination could not be determined."
        ));
    };
    if !json && parse_marker(&dest).is_some() {
        return Err(format!("{name} cannot accept a heredoc as a destination"));
    }
    let mut bodies = heredocs.iter();
    let mut sources = Vec::with_capacity(words.len());
    for word in words {
        let marker = if json { None } else { parse_marker(&word) };
        let Some(marker) = marker else {
            sources.push(CopySource::Path(word));
            continue;
        };
        match bodies.next() {
            Some(body) if body.name == marker.name => {
                sources.push(CopySource::Heredoc(body.public()));
            }
            _ => {
                return Err(format!(
                    "{name}: heredoc source {} has no body",
                    shown(&word)
                ))
            }
        }
    }
    if let Some(left) = bodies.next() {
        return Err(format!(
            "{name}: heredoc <<{} is not one of the sources (a delimiter must be one word without blanks)",
            shown(&left.name)
        ));
    }
    let copy = CopyInstr {
        from: flags.text("from"),
        chown: flags.text("chown"),
        chmod: flags.text("chmod"),
        link: flags.bool("link"),
        sources,
        dest,
    };
    Ok(if kind == Kind::Copy {
        Instruction::Copy(copy)
    } else {
        Instruction::Add(copy)
    })
}
