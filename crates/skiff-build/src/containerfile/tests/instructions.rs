//! FROM, ARG, ENV, LABEL, MAINTAINER and the one-argument instructions:
//! their forms and argument errors; unknown instructions.

use super::*;

#[test]
fn from_forms() {
    let file = parse_ok(
        "FROM alpine:3.20\nFROM --platform=$BUILDPLATFORM golang:1.22 AS Build\nFROM build as final\n",
    );
    let stages = &file.stages;
    assert_eq!(stages.len(), 3);
    assert_eq!(
        (stages[0].base.as_str(), &stages[0].name),
        ("alpine:3.20", &None)
    );
    assert_eq!(stages[1].platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(stages[1].name.as_deref(), Some("build"));
    assert_eq!(stages[2].base, "build");
    assert_eq!(stages[2].name.as_deref(), Some("final"));
    assert_eq!(stages[2].line, 3);
    assert_eq!(file.stage_named("BUILD").map(|(i, _)| i), Some(1));
    assert!(file.stage_named("nope").is_none());
}

#[test]
fn from_flag_quotes_are_removed_like_docker() {
    let file = parse_ok("FROM --platform=\"linux/arm64\" x\n");
    assert_eq!(file.stages[0].platform.as_deref(), Some("linux/arm64"));
}

#[test]
fn from_errors() {
    let two = "Containerfile:1: FROM requires either one or three arguments (FROM image [AS name])";
    assert_eq!(parse_err("FROM\n"), two);
    assert_eq!(parse_err("FROM a b\n"), two);
    assert_eq!(parse_err("FROM a AS b c\n"), two);
    assert_eq!(parse_err("FROM a TO b\n"), two);
    assert_eq!(
        parse_err("FROM a AS 1st\n"),
        "Containerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
    assert!(parse_err("FROM a AS b$c\n").contains("invalid name for build stage"));
    assert_eq!(
        parse_err("FROM --foo=bar a\n"),
        "Containerfile:1: unknown flag for FROM: --foo"
    );
    assert_eq!(
        parse_err("FROM a AS x\nFROM b AS X\n"),
        "Containerfile:2: duplicate stage name \"x\" (also the name of the stage on line 1)"
    );
}

#[test]
fn stages_own_the_steps_after_them() {
    let file = parse_ok("ARG V=1\nFROM a AS one\nRUN x\nFROM b\nRUN y\nUSER z\n");
    assert_eq!(
        file.global_args,
        vec![ArgDecl {
            name: "V".into(),
            default: Some("1".into())
        }]
    );
    assert_eq!(file.stages[0].steps.len(), 1);
    assert_eq!(file.stages[1].steps.len(), 2);
    assert_eq!(file.stages[1].steps[1].line, 6);
}

#[test]
fn arg_forms() {
    let decls = |a: &[(&str, Option<&str>)]| {
        a.iter()
            .map(|(n, d)| ArgDecl {
                name: n.to_string(),
                default: d.map(str::to_string),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        one("ARG a b=2 c=\"x y\" d= e=$HOME"),
        Instruction::Arg(decls(&[
            ("a", None),
            ("b", Some("2")),
            ("c", Some("\"x y\"")),
            ("d", Some("")),
            ("e", Some("$HOME")),
        ]))
    );
    assert_eq!(
        one_err("ARG"),
        "Containerfile:2: ARG requires at least one argument"
    );
    assert_eq!(
        one_err("ARG =x"),
        "Containerfile:2: ARG names can not be blank"
    );
    assert_eq!(
        one_err("ARG \"a\"=1"),
        "Containerfile:2: invalid ARG name \"\\\"a\\\"\""
    );
}

#[test]
fn env_forms() {
    assert_eq!(
        one("ENV a=1 b=\"x y\" c=x\\ y d='$q'"),
        Instruction::Env(pairs(&[
            ("a", "1"),
            ("b", "\"x y\""),
            ("c", "x\\ y"),
            ("d", "'$q'")
        ]))
    );
    // The legacy form: one key, the rest of the line is its value.
    assert_eq!(
        one("ENV GREETING hello   big \"world\""),
        Instruction::Env(pairs(&[("GREETING", "hello   big \"world\"")]))
    );
    assert_eq!(one("ENV a="), Instruction::Env(pairs(&[("a", "")])));
    // Inside '…' the escape character escapes nothing, so the quote closes.
    assert_eq!(
        one("ENV a='x\\' b=2"),
        Instruction::Env(pairs(&[("a", "'x\\'"), ("b", "2")]))
    );
}

#[test]
fn env_with_backtick_escape_keeps_escaped_blank_in_the_word() {
    let steps = steps("# escape=`\nFROM x\nENV a=x` y b=2\n");
    assert_eq!(
        steps[0].instruction,
        Instruction::Env(pairs(&[("a", "x` y"), ("b", "2")]))
    );
}

#[test]
fn env_errors() {
    assert_eq!(
        one_err("ENV"),
        "Containerfile:2: ENV requires at least one argument"
    );
    assert_eq!(
        one_err("ENV A"),
        "Containerfile:2: ENV must have two arguments (or be ENV key=value ...)"
    );
    assert_eq!(
        one_err("ENV a=1 b"),
        "Containerfile:2: Syntax error - can't find = in \"b\". Must be of the form: name=value"
    );
    assert_eq!(
        one_err("ENV =x"),
        "Containerfile:2: ENV names can not be blank"
    );
    assert_eq!(
        one_err("ENV --x=1 a=b"),
        "Containerfile:2: unknown flag for ENV: --x"
    );
}

#[test]
fn label_forms() {
    assert_eq!(
        one("LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0 a.b='c d'"),
        Instruction::Label(pairs(&[
            ("\"com.example.vendor\"", "\"ACME Inc\""),
            ("version", "1.0"),
            ("a.b", "'c d'"),
        ]))
    );
    assert_eq!(
        one("LABEL key value words"),
        Instruction::Label(pairs(&[("key", "value words")]))
    );
    assert_eq!(
        one_err("LABEL"),
        "Containerfile:2: LABEL requires at least one argument"
    );
    assert_eq!(
        one_err("LABEL =v"),
        "Containerfile:2: LABEL names can not be blank"
    );
}

#[test]
fn maintainer_becomes_a_literal_label() {
    let Instruction::Label(labels) = one("MAINTAINER Jane O'Brien <jane@example.com> $HOME") else {
        panic!("not a label")
    };
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].0, "maintainer");
    let none = |_: &str| Some("EXPANDED".to_string());
    let expander = Expander {
        escape: '\\',
        lookup: &none,
    };
    // Docker never expands MAINTAINER: the raw value expands to the text itself.
    assert_eq!(
        expander.word(&labels[0].1).as_deref(),
        Ok("Jane O'Brien <jane@example.com> $HOME")
    );
    let steps = steps("# escape=`\nFROM x\nMAINTAINER it's `me` ok\n");
    let Instruction::Label(labels) = &steps[0].instruction else {
        panic!("not a label")
    };
    let expander = Expander {
        escape: '`',
        lookup: &none,
    };
    assert_eq!(expander.word(&labels[0].1).as_deref(), Ok("it's `me` ok"));
    assert_eq!(
        one_err("MAINTAINER"),
        "Containerfile:2: MAINTAINER requires exactly one argument"
    );
}

#[test]
fn single_argument_instructions() {
    assert_eq!(
        one("WORKDIR /app dir/$X"),
        Instruction::Workdir("/app dir/$X".into())
    );
    assert_eq!(one("USER 1000:1000"), Instruction::User("1000:1000".into()));
    assert_eq!(
        one("STOPSIGNAL SIGTERM"),
        Instruction::StopSignal("SIGTERM".into())
    );
    for name in ["WORKDIR", "USER", "STOPSIGNAL"] {
        assert_eq!(
            one_err(name),
            format!("Containerfile:2: {name} requires exactly one argument")
        );
    }
    assert_eq!(
        one_err("USER --x=1 u"),
        "Containerfile:2: unknown flag for USER: --x"
    );
}

#[test]
fn expose_and_volume() {
    assert_eq!(
        one("EXPOSE 80  443/tcp $P"),
        Instruction::Expose(strings(&["80", "443/tcp", "$P"]))
    );
    assert_eq!(
        one_err("EXPOSE"),
        "Containerfile:2: EXPOSE requires at least one argument"
    );
    assert_eq!(
        one("VOLUME /a /b"),
        Instruction::Volume(strings(&["/a", "/b"]))
    );
    assert_eq!(
        one("VOLUME [\"/a b\", \"/c\"]"),
        Instruction::Volume(strings(&["/a b", "/c"]))
    );
    assert_eq!(
        one_err("VOLUME []"),
        "Containerfile:2: VOLUME requires at least one argument"
    );
    assert_eq!(
        one_err("VOLUME [\"/a\", \"\"]"),
        "Containerfile:2: VOLUME specified can not be an empty string"
    );
    assert_eq!(
        one_err("VOLUME [1]"),
        "Containerfile:2: when using JSON array syntax, arrays must be comprised of strings only"
    );
}

#[test]
fn unknown_and_unsupported_instructions() {
    assert_eq!(
        one_err("FOO bar"),
        "Containerfile:2: unknown instruction: \"FOO\""
    );
    assert_eq!(
        one_err("ONBUILD RUN x"),
        "Containerfile:2: ONBUILD is not supported by skiff build"
    );
    assert_eq!(
        one_err("RUN[\"a\"]"),
        "Containerfile:2: unknown instruction: \"RUN[\\\"a\\\"]\""
    );
}
