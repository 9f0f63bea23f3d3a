//! Hostile input, the rules about FROM, and the shape of every error.

use super::*;

#[test]
fn ten_thousand_instructions_fail_fast_at_the_limit() {
    let mut text = String::from("FROM x\n");
    for _ in 0..10_000 {
        text.push_str("RUN true\n");
    }
    let started = std::time::Instant::now();
    let err = parse_err(&text);
    assert_eq!(
        err,
        "Containerfile:1001: more than 1000 instructions in one file"
    );
    // Generous bound: the point is that it stops at the limit, not at the end.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn exactly_the_limit_is_accepted_and_comments_do_not_count() {
    let mut text = String::from("# header\nFROM x\n");
    for i in 0..(MAX_INSTRUCTIONS - 1) {
        text.push_str(&format!("# step {i}\n\nRUN true\n"));
    }
    assert_eq!(steps(&text).len(), MAX_INSTRUCTIONS - 1);
    text.push_str("USER one-too-many\n");
    assert!(parse_err(&text).ends_with(": more than 1000 instructions in one file"));
}

#[test]
fn input_over_four_mib_is_refused() {
    let mut text = String::from("FROM x\nRUN true");
    text.push_str(&" ".repeat(MAX_INPUT_BYTES));
    let err = parse_err(&text);
    assert!(err.starts_with("Containerfile:1: the file is "), "{err}");
    assert!(
        err.ends_with("more than the 4 MiB a Containerfile may have"),
        "{err}"
    );
    // Just under the limit is fine.
    let mut text = String::from("FROM x\nRUN true");
    text.push_str(&" ".repeat(MAX_INPUT_BYTES - text.len()));
    assert_eq!(steps(&text).len(), 1);
}

#[test]
fn huge_heredoc_and_long_lines_stay_linear() {
    // A shebang script holding every delimiter the parser would try first.
    let mut text = String::from("FROM x\nRUN <<EOF\n#!/bin/sh\nSKIFF_SCRIPT\n");
    for i in 1..50_000 {
        text.push_str(&format!("SKIFF_SCRIPT_{i}\n"));
    }
    text.push_str("EOF\n");
    let started = std::time::Instant::now();
    let script = run_of(steps(&text)[0].instruction.clone());
    assert!(matches!(script, Command::Shell(s) if s.ends_with("\nSKIFF_SCRIPT_50000\n")));
    let long = format!("FROM x\nRUN echo {}\n", "a<<".repeat(300_000));
    assert_eq!(steps(&long).len(), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn only_arg_may_come_before_the_first_from() {
    let file = parse_ok("ARG BASE=alpine\nARG TAG\nFROM $BASE:${TAG:-latest}\n");
    assert_eq!(file.global_args.len(), 2);
    assert_eq!(
        file.global_args[1],
        ArgDecl {
            name: "TAG".into(),
            default: None
        }
    );
    assert_eq!(file.stages[0].base, "$BASE:${TAG:-latest}");
    assert_eq!(
        parse_err("ARG A\nRUN echo\nFROM x\n"),
        "Containerfile:2: RUN before the first FROM (only ARG may come before it)"
    );
    assert_eq!(
        parse_err("# c\nENV A=1\n"),
        "Containerfile:2: ENV before the first FROM (only ARG may come before it)"
    );
}

#[test]
fn a_file_without_a_stage_is_an_error() {
    assert_eq!(
        parse_err(""),
        "Containerfile:1: the file has no instructions"
    );
    assert_eq!(
        parse_err("# only\n\n# comments\n"),
        "Containerfile:1: the file has no instructions"
    );
    assert_eq!(
        parse_err("ARG A=1\n"),
        "Containerfile:1: no FROM instruction: there is no stage to build"
    );
}

#[test]
fn errors_carry_the_display_name_and_the_right_line() {
    let err = match parse(
        "FROM x\n\n\n# c\nRUN a \\\n  b\nBOGUS\n",
        "ctx/Dockerfile.dev",
    ) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    };
    assert_eq!((err.file.as_str(), err.line), ("ctx/Dockerfile.dev", 7));
    assert_eq!(err.message, "unknown instruction: \"BOGUS\"");
    assert_eq!(
        err.to_string(),
        "ctx/Dockerfile.dev:7: unknown instruction: \"BOGUS\""
    );
    // An error in a continued instruction names its first line.
    assert_eq!(
        parse_err("FROM x\nCOPY \\\n  a\n"),
        "Containerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined."
    );
    // After a heredoc body, lines still count.
    assert_eq!(
        parse_err("FROM x\nRUN <<EOF\n1\n2\nEOF\nNOPE\n"),
        "Containerfile:6: unknown instruction: \"NOPE\""
    );
}

#[test]
fn every_error_is_one_line() {
    let bad = [
        "FROM x\nFOO\u{7}\nbar",
        "FROM x\nRUN <<EOF\nline\n",
        "FROM x\nCOPY --\u{1b}[31m=1 a b\n",
        "FROM x\nENV a=1 \"b\nc\"\n",
        "# escape=\u{0}\nFROM x\n",
        "FROM x\nHEALTHCHECK --interval=1\u{85}s CMD x\n",
        "FROM x AS \u{2028}\n",
    ];
    for text in bad {
        let err = parse_err(text);
        assert!(!err.contains(['\n', '\r', '\u{85}', '\u{2028}']), "{err:?}");
        assert!(err.starts_with("Containerfile:"), "{err:?}");
    }
}

#[test]
fn long_user_text_is_cut_in_messages() {
    let name = "X".repeat(10_000);
    let err = one_err(&name);
    assert!(err.len() < 200, "{} bytes", err.len());
    assert!(err.ends_with("…\""), "{err}");
}
