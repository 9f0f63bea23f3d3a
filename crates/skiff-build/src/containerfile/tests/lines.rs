//! Directives, comments, blank lines, continuations and line numbers.

use super::*;

#[test]
fn syntax_directive_is_accepted_and_ignored() {
    let file = parse_ok("# syntax=docker/dockerfile:1.7\nFROM alpine\n");
    assert_eq!(file.escape, '\\');
    assert_eq!(file.stages.len(), 1);
    assert_eq!(file.stages[0].base, "alpine");
    assert_eq!(file.stages[0].line, 2);
}

#[test]
fn backtick_escape_joins_lines_and_leaves_backslash_alone() {
    let text = "# escape=`\nFROM x\nRUN echo a `\n  b\nWORKDIR C:\\dir\\\n";
    let file = parse_ok(text);
    assert_eq!(file.escape, '`');
    let steps = &file.stages[0].steps;
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("echo a   b".into())
    );
    assert_eq!(steps[0].text, "RUN echo a   b");
    // With ` as escape, a trailing backslash is an ordinary character.
    assert_eq!(
        steps[1].instruction,
        Instruction::Workdir("C:\\dir\\".into())
    );
    assert_eq!(steps[1].line, 5);
}

#[test]
fn backslash_continuation_joins_lines() {
    let steps = steps("FROM x\nRUN apt-get update && \\\n    apt-get install -y curl\nUSER app\n");
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("apt-get update &&     apt-get install -y curl".into())
    );
    assert_eq!(steps[0].line, 2);
    assert_eq!(steps[1].line, 4);
    assert_eq!(steps[1].instruction, Instruction::User("app".into()));
}

#[test]
fn directive_keys_are_case_insensitive_and_may_have_blanks() {
    let file = parse_ok("#  ESCAPE = `  \nFROM x\nRUN a `\nb\n");
    assert_eq!(file.escape, '`');
    assert_eq!(
        run_of(file.stages[0].steps[0].instruction.clone()),
        Command::Shell("a b".into())
    );
}

#[test]
fn explicit_backslash_escape_directive() {
    let file = parse_ok("# escape=\\\nFROM x\nRUN a \\\nb\n");
    assert_eq!(file.escape, '\\');
    assert_eq!(file.stages[0].steps.len(), 1);
}

#[test]
fn unknown_directive_is_a_comment_and_ends_directives() {
    // BuildKit stops reading directives at an unknown one, so the escape
    // directive after it is a plain comment: ` does not continue the RUN
    // line, and `b` is then an instruction of its own.
    let text = "# foo=bar\n# escape=`\nFROM x\nRUN a `\nb\n";
    assert_eq!(
        parse_err(text),
        "Containerfile:5: unknown instruction: \"b\""
    );
    let file = parse_ok("# foo=bar\nFROM x\n");
    assert_eq!(file.escape, '\\');
}

#[test]
fn directive_after_blank_line_or_instruction_is_a_comment() {
    let file = parse_ok("\n# escape=`\nFROM x\nRUN a \\\nb\n");
    assert_eq!(file.escape, '\\');
    assert_eq!(
        run_of(file.stages[0].steps[0].instruction.clone()),
        Command::Shell("a b".into())
    );
    let file = parse_ok("FROM x\n# escape=`\nRUN a \\\nb\n");
    assert_eq!(file.escape, '\\');
}

#[test]
fn directive_errors_name_their_line() {
    let text = "# escape=`\n# escape=\\\nFROM x\n";
    assert_eq!(
        parse_err(text),
        "Containerfile:2: only one escape parser directive can be used"
    );
    assert_eq!(
        parse_err("# syntax=a\n# escape=x\nFROM x\n"),
        "Containerfile:2: invalid escape token \"x\" does not match ` or \\"
    );
    assert!(parse_err("# syntax=a\n# SYNTAX=b\nFROM x\n")
        .starts_with("Containerfile:2: only one syntax"));
}

#[test]
fn comments_and_blank_lines_are_skipped_and_counted() {
    let text = "# a comment\n\n   # indented comment\nFROM x\n\n\t\nRUN a # not a comment\n";
    let file = parse_ok(text);
    assert_eq!(file.stages[0].line, 4);
    let step = &file.stages[0].steps[0];
    assert_eq!(step.line, 7);
    assert_eq!(
        run_of(step.instruction.clone()),
        Command::Shell("a # not a comment".into())
    );
}

#[test]
fn comment_lines_inside_a_continuation_are_dropped() {
    let text = "FROM x\nRUN a \\\n# first\n    # second\n  b \\\n\n c\nUSER u\n";
    let steps = steps(text);
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("a   b  c".into())
    );
    assert_eq!(steps[0].text, "RUN a   b  c");
    assert_eq!(steps[1].line, 8);
}

#[test]
fn comment_inside_a_backtick_continuation_is_dropped() {
    let text = "# escape=`\nFROM x\nRUN a `\n# note\nb\n";
    assert_eq!(
        run_of(steps(text)[0].instruction.clone()),
        Command::Shell("a b".into())
    );
}

#[test]
fn continuation_at_end_of_file_is_accepted() {
    let steps = steps("FROM x\nRUN echo a \\");
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("echo a".into())
    );
    let steps = super::steps("FROM x\nRUN echo a \\\n");
    assert_eq!(steps[0].text, "RUN echo a");
}

#[test]
fn continuation_character_may_be_followed_by_blanks() {
    let steps = steps("FROM x\nRUN a \\  \t\n  b\n");
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("a   b".into())
    );
}

#[test]
fn escaped_backslash_at_end_still_continues_as_in_docker() {
    // Docker's continuation check only looks at the last escape character.
    let steps = steps("FROM x\nRUN echo \\\\\nUSER u\n");
    assert_eq!(steps.len(), 1);
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("echo \\USER u".into())
    );
}

#[test]
fn crlf_line_endings_and_bom() {
    let text = "\u{feff}# escape=`\r\nFROM x\r\nRUN a `\r\n b\r\nUSER u\r\n";
    let file = parse_ok(text);
    assert_eq!(file.escape, '`');
    let steps = &file.stages[0].steps;
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("a  b".into())
    );
    assert_eq!(steps[1].instruction, Instruction::User("u".into()));
    assert_eq!(steps[1].line, 5);
}

#[test]
fn instruction_names_are_case_insensitive() {
    let steps = steps("from x\nrun a\nCoPy a b\nuser u\n");
    assert_eq!(steps.len(), 3);
    assert!(matches!(steps[1].instruction, Instruction::Copy(_)));
    assert_eq!(steps[1].text, "CoPy a b");
}

#[test]
fn leading_blanks_before_an_instruction_are_ignored() {
    let steps = steps("  FROM x\n\t RUN a\n");
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("a".into())
    );
    assert_eq!(steps[0].text, "RUN a");
}

#[test]
fn step_text_joins_continuations_without_heredoc_bodies() {
    let steps = steps("FROM x\nCOPY a \\\n  b /dst/\nRUN <<EOF\necho hi\nEOF\n");
    assert_eq!(steps[0].text, "COPY a   b /dst/");
    assert_eq!(steps[1].text, "RUN <<EOF");
}

#[test]
fn lone_continuation_line_joins_the_next_line() {
    let steps = steps("FROM x\n\\\nUSER u\n");
    assert_eq!(steps[0].instruction, Instruction::User("u".into()));
    assert_eq!(steps[0].line, 2);
}
