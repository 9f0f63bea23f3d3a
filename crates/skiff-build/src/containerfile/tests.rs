//! Tests of the Containerfile parser, by topic; the helpers here parse a
//! file and pick out what a test looks at, failing loudly on surprises.

mod commands;
mod expand;
mod fuzz;
mod heredocs;
mod instructions;
mod limits;
mod lines;

use super::*;

/// Parses `text` or fails the test with the error.
fn parse_ok(text: &str) -> Containerfile {
    match parse(text, "Containerfile") {
        Ok(file) => file,
        Err(e) => panic!("unexpected error: {e}\n--- input:\n{text}"),
    }
}

/// The error `text` gives, as displayed.
fn parse_err(text: &str) -> String {
    match parse(text, "Containerfile") {
        Ok(file) => panic!("expected an error, got {file:#?}\n--- input:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The steps of the only stage of `text`.
fn steps(text: &str) -> Vec<Step> {
    let file = parse_ok(text);
    assert_eq!(file.stages.len(), 1, "one stage expected");
    file.stages
        .into_iter()
        .next()
        .map(|s| s.steps)
        .unwrap_or_default()
}

/// The one instruction of `FROM x` followed by `body`.
fn one(body: &str) -> Instruction {
    let steps = steps(&format!("FROM x\n{body}"));
    assert_eq!(steps.len(), 1, "one step expected: {steps:#?}");
    steps
        .into_iter()
        .next()
        .map(|s| s.instruction)
        .expect("one step")
}

/// The error of `FROM x` followed by `body`.
fn one_err(body: &str) -> String {
    parse_err(&format!("FROM x\n{body}"))
}

/// Shorthand for a list of owned strings.
fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A `(key, value)` list of owned strings.
fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The COPY (or ADD) of an instruction.
fn copy_of(instruction: Instruction) -> CopyInstr {
    match instruction {
        Instruction::Copy(c) | Instruction::Add(c) => c,
        other => panic!("not COPY/ADD: {other:?}"),
    }
}

/// The RUN command of an instruction.
fn run_of(instruction: Instruction) -> Command {
    match instruction {
        Instruction::Run(c) => c,
        other => panic!("not RUN: {other:?}"),
    }
}

/// The shell text of a shell-form RUN.
fn run_shell(body: &str) -> String {
    match run_of(one(body)) {
        Command::Shell(s) => s,
        other => panic!("not shell form: {other:?}"),
    }
}
