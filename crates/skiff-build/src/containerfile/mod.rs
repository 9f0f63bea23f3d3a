//! Containerfile/Dockerfile syntax, as BuildKit's dockerfile frontend (1.x)
//! reads it: parser directives, comments, line continuations, heredocs, every
//! instruction skiff can build, and docker's variable expansion.
//!
//! [`parse`] turns a file into stages of steps without expanding anything: the
//! values stay raw (quotes kept) because what a variable holds is only known
//! while the build runs. The executor expands them with an [`Expander`] at
//! the step that uses them, as docker does.
//!
//! The parser is strict: an unknown instruction or flag, an instruction skiff
//! does not build (ONBUILD, RUN --mount) or a malformed argument is an error
//! naming `file:line`, never a step silently skipped. It is also bounded:
//! input over [`MAX_INPUT_BYTES`] or more than [`MAX_INSTRUCTIONS`]
//! instructions fail at once, and no input makes it panic.

mod build;
mod duration;
mod expand;
mod flags;
mod health;
mod heredoc;
mod instruction;
mod lines;
mod pattern;
mod words;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use duration::parse_duration;
pub use expand::{ExpandError, Expander};

/// The largest Containerfile accepted, in bytes (docker has no limit; a file
/// this large is a mistake or an attack, and everything after is linear in it).
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// The most instructions (FROM included) one file may hold.
pub const MAX_INSTRUCTIONS: usize = 1000;

/// Parses the text of a Containerfile. `file_name` is the name shown in
/// errors (`{file_name}:{line}: {message}`), not a path that is opened.
pub fn parse(text: &str, file_name: &str) -> Result<Containerfile, ParseError> {
    build::parse(text, file_name)
}

/// Why a Containerfile could not be parsed: where, and what is wrong, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    /// The display name given to [`parse`].
    pub file: String,
    /// The 1-based line of the instruction (or directive) at fault.
    pub line: usize,
    /// What is wrong, one line without the location.
    pub message: String,
}

/// A parsed Containerfile: its escape character, the ARGs declared before the
/// first FROM and the build stages in file order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Containerfile {
    /// The escape and line-continuation character (`\` or `` ` ``, from `# escape=`).
    pub escape: char,
    /// ARGs before the first FROM: usable in FROM lines, and in a stage that
    /// declares them again without a value.
    pub global_args: Vec<ArgDecl>,
    /// The stages, in file order (never empty).
    pub stages: Vec<Stage>,
}

/// One `name[=default]` of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArgDecl {
    /// The variable's name.
    pub name: String,
    /// The default as written (raw: quotes kept, variables unexpanded).
    pub default: Option<String>,
}

/// A build stage: a FROM line and the steps after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Stage {
    /// The line of its FROM instruction.
    pub line: usize,
    /// The base image as written (raw, may hold `$VAR`; `scratch` for none).
    pub base: String,
    /// `--platform=` as written (raw).
    pub platform: Option<String>,
    /// The `AS name`, lower-cased (stage names are case-insensitive).
    pub name: Option<String>,
    /// The instructions after FROM, in order.
    pub steps: Vec<Step>,
}

/// One instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Step {
    /// The 1-based line the instruction starts on.
    pub line: usize,
    /// The instruction as written, continuations joined into one line and
    /// heredoc bodies left out: what history shows and cache keys start from.
    pub text: String,
    /// The heredocs that follow the instruction's line, in order. A cache
    /// key must cover them, since `text` does not.
    pub heredocs: Vec<Heredoc>,
    /// What the instruction does.
    pub instruction: Instruction,
}

/// An instruction of a stage (FROM starts a [`Stage`] and is not one).
/// Words are raw: quotes and variables are kept, for the executor to expand.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Instruction {
    /// `ARG name[=default] ...`.
    Arg(Vec<ArgDecl>),
    /// `ENV k=v ...` or `ENV k v with spaces`: (key, value) pairs, raw.
    Env(Vec<(String, String)>),
    /// `LABEL k=v ...` (and `MAINTAINER`, as the label `maintainer`), raw.
    Label(Vec<(String, String)>),
    /// `WORKDIR path`, raw.
    Workdir(String),
    /// `USER user[:group]`, raw.
    User(String),
    /// `STOPSIGNAL signal`, raw.
    StopSignal(String),
    /// `EXPOSE port[/proto] ...`, raw words.
    Expose(Vec<String>),
    /// `VOLUME path ...` or `VOLUME ["path", ...]`, raw words.
    Volume(Vec<String>),
    /// `COPY [flags] src... dest`.
    Copy(CopyInstr),
    /// `ADD [flags] src... dest`.
    Add(CopyInstr),
    /// `RUN command`. A heredoc command is already resolved here the way
    /// BuildKit runs it (see [`Command`]).
    Run(Command),
    /// `SHELL ["executable", "args"...]`.
    Shell(Vec<String>),
    /// `ENTRYPOINT`, exec or shell form.
    Entrypoint(Command),
    /// `CMD`, exec or shell form.
    Cmd(Command),
    /// `HEALTHCHECK NONE` or `HEALTHCHECK [flags] CMD ...`.
    Healthcheck(Healthcheck),
}

/// A command in exec form (JSON array) or shell form (one string for the
/// stage's SHELL, `/bin/sh -c` by default).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// `["exe", "arg"]`: run as is, no shell. May be empty (`CMD []`).
    Exec(Vec<String>),
    /// The text handed to the shell as its last argument. For `RUN <<EOF`
    /// alone it is the heredoc body (a body starting with `#!` is run by its
    /// interpreter, as BuildKit does); for any other RUN with heredocs it is
    /// the line followed by the heredoc lines and terminators, which the
    /// shell reads as here-documents itself.
    Shell(String),
}

/// The arguments of COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CopyInstr {
    /// `--from=stage|image` (COPY only), raw.
    pub from: Option<String>,
    /// `--chown=user[:group]`, raw.
    pub chown: Option<String>,
    /// `--chmod=mode`, raw.
    pub chmod: Option<String>,
    /// `--link` was given (accepted; skiff's layers are independent anyway).
    pub link: bool,
    /// The sources, in order.
    pub sources: Vec<CopySource>,
    /// The destination, raw.
    pub dest: String,
}

/// One source of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CopySource {
    /// A path in the context (or the `--from` stage/image), raw.
    Path(String),
    /// `<<NAME`: a file called NAME whose content is the heredoc's body.
    Heredoc(Heredoc),
}

/// A here-document: `<<NAME` on an instruction's line, its body on the lines
/// after, up to a line that is exactly NAME.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Heredoc {
    /// The delimiter, quotes removed (`<<'EOF'` → `EOF`).
    pub name: String,
    /// The body, every line ending in `\n`; for `<<-NAME`, leading tabs
    /// are already stripped from each line.
    pub body: String,
    /// Whether variables in the body are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// Whether it was `<<-NAME` (leading tabs of body lines are stripped).
    pub strip_tabs: bool,
}

/// `HEALTHCHECK`: no check at all, or a command and its timing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any check inherited from the base image.
    None,
    /// `HEALTHCHECK [flags] CMD ...`. An option left out (or given as 0)
    /// is `None`: the runtime's default applies.
    Check {
        /// The command: exec form, or shell form (docker's `CMD-SHELL`).
        test: Command,
        /// `--interval=`: time between checks.
        interval: Option<Duration>,
        /// `--timeout=`: how long one check may take.
        timeout: Option<Duration>,
        /// `--start-period=`: failures in this time after start do not count.
        start_period: Option<Duration>,
        /// `--start-interval=`: time between checks during the start period.
        start_interval: Option<Duration>,
        /// `--retries=`: consecutive failures before unhealthy (0: default).
        retries: Option<u32>,
    },
}

impl Containerfile {
    /// The stage called `name` (compared case-insensitively), if any.
    pub fn stage_named(&self, name: &str) -> Option<(usize, &Stage)> {
        let lower = name.to_lowercase();
        self.stages
            .iter()
            .enumerate()
            .find(|(_, s)| s.name.as_deref() == Some(lower.as_str()))
    }
}
