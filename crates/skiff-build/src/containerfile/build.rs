//! The parse itself: logical lines into instructions, heredoc bodies read
//! where a line opens them, instructions grouped into stages, and the
//! limits that keep hostile input cheap.

use super::heredoc::{markers_in_line, RawHeredoc};
use super::instruction::{self, Kind, Parsed};
use super::lines::{Logical, Scanner};
use super::words::{parse_json_array, split_command, Json};
use super::{
    Containerfile, Instruction, ParseError, Stage, Step, MAX_INPUT_BYTES, MAX_INSTRUCTIONS,
};

/// See [`super::parse`].
pub(super) fn parse(text: &str, file: &str) -> Result<Containerfile, ParseError> {
    let error = |line: usize, message: String| ParseError {
        file: file.to_string(),
        line,
        message,
    };
    if text.len() > MAX_INPUT_BYTES {
        let message = format!(
            "the file is {} bytes, more than the {} MiB a Containerfile may have",
            text.len(),
            MAX_INPUT_BYTES / (1024 * 1024)
        );
        return Err(error(1, message));
    }
    let mut scanner = Scanner::new(text).map_err(|(line, message)| error(line, message))?;
    let escape = scanner.escape();
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut count = 0;
    while let Some(logical) = scanner.next_logical() {
        let line = logical.line;
        count += 1;
        if count > MAX_INSTRUCTIONS {
            // Stop here: the rest of a huge file is never looked at.
            let message = format!("more than {MAX_INSTRUCTIONS} instructions in one file");
            return Err(error(line, message));
        }
        let split = split_command(&logical.text);
        let kind = Kind::lookup(split.name).map_err(|m| error(line, m))?;
        let heredocs =
            read_heredocs(&mut scanner, kind, &logical, split.args).map_err(|m| error(line, m))?;
        let parsed = instruction::parse(kind, &split.flags, split.args, escape, &heredocs)
            .map_err(|m| error(line, m))?;
        let instruction = match parsed {
            Parsed::From {
                base,
                platform,
                name,
            } => {
                if let Some(taken) = stages.iter().find(|s| s.name.is_some() && s.name == name) {
                    let message = format!(
                        "duplicate stage name {:?} (also the name of the stage on line {})",
                        name.unwrap_or_default(),
                        taken.line
                    );
                    return Err(error(line, message));
                }
                stages.push(Stage {
                    line,
                    base,
                    platform,
                    name,
                    steps: Vec::new(),
                });
                continue;
            }
            Parsed::Step(instruction) => instruction,
        };
        let Some(stage) = stages.last_mut() else {
            // Before the first FROM only ARG may come: the global args.
            let Instruction::Arg(decls) = instruction else {
                let message = format!(
                    "{} before the first FROM (only ARG may come before it)",
                    kind.name()
                );
                return Err(error(line, message));
            };
            global_args.extend(decls);
            continue;
        };
        stage.steps.push(Step {
            line,
            text: logical.text.trim().to_string(),
            heredocs: heredocs.iter().map(RawHeredoc::public).collect(),
            instruction,
        });
    }
    if stages.is_empty() {
        let message = if count == 0 {
            "the file has no instructions".to_string()
        } else {
            "no FROM instruction: there is no stage to build".to_string()
        };
        return Err(error(1, message));
    }
    Ok(Containerfile {
        escape,
        global_args,
        stages,
    })
}

/// Reads the bodies of the heredocs an instruction's line opens: only
/// RUN, COPY and ADD in shell form have them, as in BuildKit.
fn read_heredocs(
    scanner: &mut Scanner<'_>,
    kind: Kind,
    logical: &Logical,
    args: &str,
) -> Result<Vec<RawHeredoc>, String> {
    if !kind.takes_heredocs() || !logical.text.contains("<<") {
        return Ok(Vec::new());
    }
    if !matches!(parse_json_array(args), Ok(Json::NotJson)) {
        return Ok(Vec::new());
    }
    let mut heredocs = Vec::new();
    for marker in markers_in_line(&logical.text) {
        let Some(raw) = scanner.read_heredoc(&marker.name, marker.strip_tabs) else {
            let dash = if marker.strip_tabs { "-" } else { "" };
            let name = super::words::escaped(&marker.name);
            return Err(format!("heredoc <<{dash}{name} is never terminated"));
        };
        heredocs.push(RawHeredoc {
            name: marker.name,
            strip_tabs: marker.strip_tabs,
            expand: marker.expand,
            raw,
        });
    }
    Ok(heredocs)
}
