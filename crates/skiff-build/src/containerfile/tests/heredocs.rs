//! Heredocs in RUN, COPY and ADD, as BuildKit reads and runs them.

use super::*;

fn heredoc(name: &str, body: &str, expand: bool, strip_tabs: bool) -> Heredoc {
    Heredoc {
        name: name.into(),
        body: body.into(),
        expand,
        strip_tabs,
    }
}

#[test]
fn run_with_a_single_heredoc_runs_its_body() {
    let steps = steps("FROM x\nRUN <<EOF\necho a\n  echo b\nEOF\nUSER u\n");
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("echo a\n  echo b\n".into())
    );
    assert_eq!(steps[0].text, "RUN <<EOF");
    assert_eq!(
        steps[0].heredocs,
        vec![heredoc("EOF", "echo a\n  echo b\n", true, false)]
    );
    // The line after the terminator is the next instruction.
    assert_eq!(
        (steps[1].line, &steps[1].instruction),
        (6, &Instruction::User("u".into()))
    );
}

#[test]
fn run_with_heredoc_inside_a_command_passes_everything_to_the_shell() {
    let text = run_shell("RUN cat <<EOF > /etc/motd\nhello $USER\nEOF");
    assert_eq!(text, "cat <<EOF > /etc/motd\nhello $USER\nEOF");
    let text = run_shell("RUN python3 <<EOF\nprint(1)\nEOF");
    assert_eq!(text, "python3 <<EOF\nprint(1)\nEOF");
    // A command after the opener is not "a single heredoc" either.
    assert_eq!(
        run_shell("RUN <<EOF bash\necho\nEOF"),
        "<<EOF bash\necho\nEOF"
    );
}

#[test]
fn dash_heredoc_strips_leading_tabs() {
    let steps = steps("FROM x\nRUN <<-EOF\n\t\techo a\n\t echo b\n\tEOF\n");
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("echo a\n echo b\n".into())
    );
    assert_eq!(
        steps[0].heredocs,
        vec![heredoc("EOF", "echo a\n echo b\n", true, true)]
    );
    // In a longer command the shell strips them itself: the raw lines go through.
    let text = run_shell("RUN cat <<-EOF > f\n\tx\n\tEOF");
    assert_eq!(text, "cat <<-EOF > f\n\tx\nEOF");
}

#[test]
fn quoted_delimiter_means_no_expansion() {
    for opener in ["<<'EOF'", "<<\"EOF\"", "<<E'O'F", "<<-'EOF'"] {
        let steps = steps(&format!("FROM x\nRUN {opener}\necho $HOME\nEOF\n"));
        assert_eq!(
            run_of(steps[0].instruction.clone()),
            Command::Shell("echo $HOME\n".into()),
            "{opener}"
        );
        assert_eq!(steps[0].heredocs[0].name, "EOF");
        assert!(!steps[0].heredocs[0].expand, "{opener}");
    }
    let steps = steps("FROM x\nRUN <<EOF\necho $HOME\nEOF\n");
    assert!(steps[0].heredocs[0].expand);
}

#[test]
fn several_heredocs_on_one_run_line() {
    let text = run_shell("RUN cat <<A > /a && cat <<-B > /b\none\nA\n\ttwo\n\tB");
    assert_eq!(text, "cat <<A > /a && cat <<-B > /b\none\nA\n\ttwo\nB");
    let steps = steps("FROM x\nRUN cat <<A <<B\na\nA\nb\nB\nUSER u\n");
    assert_eq!(steps[0].heredocs.len(), 2);
    assert_eq!(steps[1].line, 7);
}

#[test]
fn shebang_body_runs_with_its_interpreter() {
    let text = run_shell("RUN <<EOF\n#!/usr/bin/env python3\nprint('hi')\nEOF");
    assert_eq!(
        text,
        "'/usr/bin/env' 'python3' /dev/fd/3 3<<'SKIFF_SCRIPT'\n#!/usr/bin/env python3\nprint('hi')\nSKIFF_SCRIPT\n"
    );
    // A body that holds the delimiter gets another one.
    let text = run_shell("RUN <<EOF\n#!/bin/bash\nSKIFF_SCRIPT\nEOF");
    assert_eq!(
        text,
        "'/bin/bash' /dev/fd/3 3<<'SKIFF_SCRIPT_1'\n#!/bin/bash\nSKIFF_SCRIPT\nSKIFF_SCRIPT_1\n"
    );
    // `#!` with nothing after it is no interpreter: the body goes to the shell.
    assert_eq!(run_shell("RUN <<EOF\n#!\necho\nEOF"), "#!\necho\n");
}

#[test]
fn terminator_must_match_exactly() {
    // "EOF " (trailing blank) and a tab-indented EOF without `-` are body lines.
    let err = parse_err("FROM x\nRUN <<EOF\necho\nEOF \n\tEOF\n");
    assert_eq!(err, "Containerfile:2: heredoc <<EOF is never terminated");
    let steps = steps("FROM x\nRUN <<EOF\nEOFX\nEOF\n");
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("EOFX\n".into())
    );
}

#[test]
fn empty_heredoc_body() {
    let steps = steps("FROM x\nCOPY <<EOF /empty\nEOF\n");
    let copy = copy_of(steps[0].instruction.clone());
    assert_eq!(
        copy.sources,
        vec![CopySource::Heredoc(heredoc("EOF", "", true, false))]
    );
}

#[test]
fn quoted_or_json_openers_are_not_heredocs() {
    let steps = steps("FROM x\nRUN echo \"<<EOF\" '<<X'\nUSER u\n");
    assert_eq!(steps.len(), 2);
    assert!(steps[0].heredocs.is_empty());
    let steps = super::steps("FROM x\nRUN [\"sh\", \"-c\", \"cat <<EOF\"]\nUSER u\n");
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Exec(strings(&["sh", "-c", "cat <<EOF"]))
    );
    assert_eq!(steps[1].instruction, Instruction::User("u".into()));
    // A here-string is no heredoc, nor is `<<` glued to a word.
    let steps = super::steps("FROM x\nRUN cat <<<word && a<<b\nUSER u\n");
    assert_eq!(steps.len(), 2);
    // Other instructions never have heredocs.
    let steps = super::steps("FROM x\nLABEL a=<<EOF\nUSER u\n");
    assert_eq!(
        steps[0].instruction,
        Instruction::Label(pairs(&[("a", "<<EOF")]))
    );
}

#[test]
fn heredoc_opener_on_a_continued_line() {
    let steps = steps("FROM x\nRUN cat \\\n  <<EOF > /f\nbody \\\n# not a comment\nEOF\n");
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("cat   <<EOF > /f\nbody \\\n# not a comment\nEOF".into())
    );
}

#[test]
fn heredoc_body_with_crlf_lines() {
    let steps = steps("FROM x\r\nRUN <<EOF\r\necho a\r\nEOF\r\nUSER u\r\n");
    assert_eq!(
        run_of(steps[0].instruction.clone()),
        Command::Shell("echo a\n".into())
    );
    assert_eq!(steps[1].line, 5);
}

#[test]
fn copy_heredoc_is_a_file_source() {
    let copy = copy_of(one("COPY <<EOF /etc/app.conf\nname=$NAME\n\tindent\nEOF"));
    assert_eq!(
        copy.sources,
        vec![CopySource::Heredoc(heredoc(
            "EOF",
            "name=$NAME\n\tindent\n",
            true,
            false
        ))]
    );
    assert_eq!(copy.dest, "/etc/app.conf");
    let copy = copy_of(one("COPY <<-'EOF' /f\n\tliteral $X\n\tEOF"));
    assert_eq!(
        copy.sources,
        vec![CopySource::Heredoc(heredoc(
            "EOF",
            "literal $X\n",
            false,
            true
        ))]
    );
}

#[test]
fn copy_several_heredocs_and_paths() {
    let steps =
        steps("FROM x\nCOPY --chmod=755 a.txt <<A <<\"B\" /dst/\none\nA\ntwo $X\nB\nUSER u\n");
    let copy = copy_of(steps[0].instruction.clone());
    assert_eq!(copy.chmod.as_deref(), Some("755"));
    assert_eq!(
        copy.sources,
        vec![
            CopySource::Path("a.txt".into()),
            CopySource::Heredoc(heredoc("A", "one\n", true, false)),
            CopySource::Heredoc(heredoc("B", "two $X\n", false, false)),
        ]
    );
    assert_eq!(copy.dest, "/dst/");
    assert_eq!(steps[0].text, "COPY --chmod=755 a.txt <<A <<\"B\" /dst/");
    assert_eq!(steps[1].line, 7);
}

#[test]
fn add_heredoc_and_destination_errors() {
    let add = copy_of(one("ADD <<EOF /x\ny\nEOF"));
    assert_eq!(
        add.sources,
        vec![CopySource::Heredoc(heredoc("EOF", "y\n", true, false))]
    );
    assert_eq!(
        one_err("COPY a <<EOF\nx\nEOF"),
        "Containerfile:2: COPY cannot accept a heredoc as a destination"
    );
    assert_eq!(
        one_err("COPY <<EOF\nx\nEOF"),
        "Containerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined."
    );
    // A delimiter with a blank in it cannot be told apart from two sources.
    assert_eq!(
        one_err("COPY <<\"A B\" /d\nx\nA B"),
        "Containerfile:2: COPY: heredoc <<\"A B\" is not one of the sources (a delimiter must be one word without blanks)"
    );
}

#[test]
fn heredoc_errors_name_the_instruction_line() {
    assert_eq!(
        parse_err("FROM x\n\nRUN <<EOF\necho\n"),
        "Containerfile:3: heredoc <<EOF is never terminated"
    );
    assert_eq!(
        parse_err("FROM x\nCOPY <<A <<-B /d\na\nA\nb\n"),
        "Containerfile:2: heredoc <<-B is never terminated"
    );
    assert!(!parse_err("FROM x\nRUN <<EOF").contains('\n'));
}

#[test]
fn copy_heredoc_body_expands_like_a_here_document() {
    let copy = copy_of(one(
        "COPY <<EOF /f\nhi $NAME \"q\" 'x' \\n \\$NAME ${U:-d}\nEOF",
    ));
    let [CopySource::Heredoc(doc)] = copy.sources.as_slice() else {
        panic!("one heredoc")
    };
    let lookup = |n: &str| (n == "NAME").then(|| "bob".to_string());
    let expander = Expander {
        escape: '\\',
        lookup: &lookup,
    };
    assert_eq!(
        expander.heredoc(&doc.body).as_deref(),
        Ok("hi bob \"q\" 'x' \\n $NAME d\n")
    );
}
