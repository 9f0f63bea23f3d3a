//! COPY, ADD, RUN, SHELL, CMD, ENTRYPOINT and HEALTHCHECK: forms, flags, errors.

use super::*;

#[test]
fn copy_shell_form_with_flags() {
    let copy = copy_of(one(
        "COPY --from=build --chown=1:1 --chmod=0755 --link a b /dst/",
    ));
    assert_eq!(copy.from.as_deref(), Some("build"));
    assert_eq!(copy.chown.as_deref(), Some("1:1"));
    assert_eq!(copy.chmod.as_deref(), Some("0755"));
    assert!(copy.link);
    assert_eq!(
        copy.sources,
        vec![CopySource::Path("a".into()), CopySource::Path("b".into())]
    );
    assert_eq!(copy.dest, "/dst/");
    let copy = copy_of(one("COPY --link=false src $DEST"));
    assert!(!copy.link);
    assert_eq!((copy.from, copy.dest.as_str()), (None, "$DEST"));
}

#[test]
fn copy_json_form_and_fallbacks() {
    let copy = copy_of(one("COPY [\"a b\", \"<<EOF\", \"/d e/\"]"));
    assert_eq!(
        copy.sources,
        vec![
            CopySource::Path("a b".into()),
            CopySource::Path("<<EOF".into())
        ]
    );
    assert_eq!(copy.dest, "/d e/");
    // Not valid JSON: the shell form, as docker falls back to.
    let copy = copy_of(one("COPY [a] /d"));
    assert_eq!(copy.sources, vec![CopySource::Path("[a]".into())]);
    // A bare `--` ends the flags.
    let copy = copy_of(one("COPY -- --weird /d"));
    assert_eq!(copy.sources, vec![CopySource::Path("--weird".into())]);
}

#[test]
fn copy_and_add_errors() {
    let two = "Containerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined.";
    assert_eq!(one_err("COPY a"), two);
    assert_eq!(one_err("COPY"), two);
    assert_eq!(one_err("COPY [\"a\"]"), two);
    assert_eq!(
        one_err("COPY --parents a b"),
        "Containerfile:2: COPY --parents is not supported by skiff build"
    );
    assert_eq!(
        one_err("COPY --foo a b"),
        "Containerfile:2: unknown flag for COPY: --foo"
    );
    assert_eq!(
        one_err("COPY --from a b"),
        "Containerfile:2: COPY --from needs a value (--from=...)"
    );
    assert_eq!(
        one_err("COPY --chown= a b"),
        "Containerfile:2: COPY --chown needs a value (--chown=...)"
    );
    assert_eq!(
        one_err("COPY --from=a --from=b x y"),
        "Containerfile:2: duplicate flag for COPY: --from"
    );
    assert_eq!(
        one_err("COPY --link=maybe a b"),
        "Containerfile:2: COPY --link expects true or false, not \"maybe\""
    );
    assert_eq!(
        one_err("COPY [1, \"b\"]"),
        "Containerfile:2: when using JSON array syntax, arrays must be comprised of strings only"
    );
    assert_eq!(
        one_err("ADD --from=x a b"),
        "Containerfile:2: unknown flag for ADD: --from"
    );
    assert_eq!(
        one_err("ADD --checksum=sha256:00 a b"),
        "Containerfile:2: ADD --checksum is not supported by skiff build"
    );
    assert!(one_err("ADD --keep-git-dir a b").contains("ADD --keep-git-dir is not supported"));
}

#[test]
fn add_forms() {
    let Instruction::Add(add) = one("ADD --chown=app --chmod=644 --link a.tar.gz /opt/") else {
        panic!("not ADD")
    };
    assert_eq!(add.chown.as_deref(), Some("app"));
    assert_eq!(add.chmod.as_deref(), Some("644"));
    assert!(add.link);
    assert_eq!(add.from, None);
    let add = copy_of(one("ADD [\"x\", \"y\"]"));
    assert_eq!(
        (add.sources, add.dest.as_str()),
        (vec![CopySource::Path("x".into())], "y")
    );
}

#[test]
fn run_forms() {
    assert_eq!(
        run_shell("RUN echo hi && ls \"$HOME\""),
        "echo hi && ls \"$HOME\""
    );
    assert_eq!(
        run_of(one("RUN [\"echo\", \"hi there\"]")),
        Command::Exec(strings(&["echo", "hi there"]))
    );
    assert_eq!(
        run_of(one("run   [ \"a\" ]  ")),
        Command::Exec(strings(&["a"]))
    );
    assert_eq!(run_shell("RUN [not json"), "[not json");
    assert_eq!(run_shell("RUN ['single']"), "['single']");
}

#[test]
fn run_errors() {
    assert_eq!(
        one_err("RUN"),
        "Containerfile:2: RUN requires at least one argument"
    );
    assert_eq!(
        one_err("RUN []"),
        "Containerfile:2: RUN requires at least one argument"
    );
    assert_eq!(
        one_err("RUN [1]"),
        "Containerfile:2: when using JSON array syntax, arrays must be comprised of strings only"
    );
    for flag in [
        "mount=type=cache,target=/root/.cache",
        "network=none",
        "security=insecure",
    ] {
        let name = flag.split('=').next().unwrap_or_default();
        assert_eq!(
            one_err(&format!("RUN --{flag} make")),
            format!("Containerfile:2: RUN --{name} is not supported by skiff build")
        );
    }
    assert_eq!(
        one_err("RUN --mount make"),
        "Containerfile:2: RUN --mount is not supported by skiff build"
    );
    assert_eq!(
        one_err("RUN --foo make"),
        "Containerfile:2: unknown flag for RUN: --foo"
    );
}

#[test]
fn shell_must_be_json() {
    assert_eq!(
        one("SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]"),
        Instruction::Shell(strings(&["/bin/bash", "-o", "pipefail", "-c"]))
    );
    assert_eq!(
        one_err("SHELL /bin/bash -c"),
        "Containerfile:2: SHELL requires the arguments to be in JSON form"
    );
    assert_eq!(
        one_err("SHELL []"),
        "Containerfile:2: SHELL requires at least one argument"
    );
    assert_eq!(
        one_err("SHELL"),
        "Containerfile:2: SHELL requires at least one argument"
    );
}

#[test]
fn cmd_and_entrypoint_forms() {
    assert_eq!(
        one("CMD [\"nginx\", \"-g\", \"daemon off;\"]"),
        Instruction::Cmd(Command::Exec(strings(&["nginx", "-g", "daemon off;"])))
    );
    assert_eq!(
        one("CMD echo $HOME"),
        Instruction::Cmd(Command::Shell("echo $HOME".into()))
    );
    assert_eq!(one("CMD []"), Instruction::Cmd(Command::Exec(vec![])));
    assert_eq!(
        one("ENTRYPOINT [\"/init\"]"),
        Instruction::Entrypoint(Command::Exec(strings(&["/init"])))
    );
    assert_eq!(
        one("ENTRYPOINT exec top -b"),
        Instruction::Entrypoint(Command::Shell("exec top -b".into()))
    );
    assert_eq!(
        one_err("CMD"),
        "Containerfile:2: CMD requires at least one argument (CMD [] clears it)"
    );
    assert_eq!(
        one_err("ENTRYPOINT"),
        "Containerfile:2: ENTRYPOINT requires at least one argument (ENTRYPOINT [] clears it)"
    );
    // Docker reads leading `--words` of any instruction as flags.
    assert_eq!(
        one_err("CMD --help"),
        "Containerfile:2: unknown flag for CMD: --help"
    );
}

#[test]
fn healthcheck_none() {
    assert_eq!(
        one("HEALTHCHECK NONE"),
        Instruction::Healthcheck(Healthcheck::None)
    );
    assert_eq!(
        one("healthcheck none"),
        Instruction::Healthcheck(Healthcheck::None)
    );
    assert_eq!(
        one_err("HEALTHCHECK NONE x"),
        "Containerfile:2: HEALTHCHECK NONE takes no arguments"
    );
    assert_eq!(
        one_err("HEALTHCHECK --interval=5s NONE"),
        "Containerfile:2: HEALTHCHECK NONE takes no flags"
    );
    assert_eq!(
        one_err("HEALTHCHECK"),
        "Containerfile:2: HEALTHCHECK requires at least one argument"
    );
}

#[test]
fn healthcheck_cmd_with_all_flags() {
    let check = one(
        "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=2s --retries=3 \\\n  CMD curl -f http://localhost/ || exit 1",
    );
    let expected = Healthcheck::Check {
        test: Command::Shell("curl -f http://localhost/ || exit 1".into()),
        interval: Some(Duration::from_secs(30)),
        timeout: Some(Duration::from_secs(90)),
        start_period: Some(Duration::from_millis(500)),
        start_interval: Some(Duration::from_secs(2)),
        retries: Some(3),
    };
    assert_eq!(check, Instruction::Healthcheck(expected));
    let Instruction::Healthcheck(Healthcheck::Check {
        test,
        interval,
        retries,
        ..
    }) = one("HEALTHCHECK cmd [\"curl\", \"-f\", \"x\"]")
    else {
        panic!("not a check")
    };
    assert_eq!(test, Command::Exec(strings(&["curl", "-f", "x"])));
    assert_eq!((interval, retries), (None, None));
    // Zero is docker's "use the default".
    let Instruction::Healthcheck(Healthcheck::Check { interval, .. }) =
        one("HEALTHCHECK --interval=0s CMD true")
    else {
        panic!("not a check")
    };
    assert_eq!(interval, None);
}

#[test]
fn healthcheck_errors() {
    let cases = [
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        (
            "HEALTHCHECK CMD []",
            "Missing command after HEALTHCHECK CMD",
        ),
        (
            "HEALTHCHECK FOO x",
            "Unknown type \"FOO\" in HEALTHCHECK (try CMD)",
        ),
        (
            "HEALTHCHECK --interval=5 CMD x",
            "HEALTHCHECK --interval: missing unit in duration \"5\"",
        ),
        (
            "HEALTHCHECK --timeout=5x CMD x",
            "HEALTHCHECK --timeout: unknown unit \"x\" in duration \"5x\"",
        ),
        (
            "HEALTHCHECK --interval=10us CMD x",
            "HEALTHCHECK --interval: \"10us\" is shorter than the minimum of 1ms",
        ),
        (
            "HEALTHCHECK --start-period=-5s CMD x",
            "HEALTHCHECK --start-period: duration \"-5s\" is negative",
        ),
        (
            "HEALTHCHECK --retries=-1 CMD x",
            "HEALTHCHECK --retries cannot be negative (-1)",
        ),
        (
            "HEALTHCHECK --retries=three CMD x",
            "HEALTHCHECK --retries: \"three\" is not a number",
        ),
        (
            "HEALTHCHECK --retries=9999999999 CMD x",
            "HEALTHCHECK --retries: \"9999999999\" is not a number",
        ),
        (
            "HEALTHCHECK --foo=1 CMD x",
            "unknown flag for HEALTHCHECK: --foo",
        ),
        (
            "HEALTHCHECK --interval CMD x",
            "HEALTHCHECK --interval needs a value (--interval=...)",
        ),
    ];
    for (body, message) in cases {
        assert_eq!(
            one_err(body),
            format!("Containerfile:2: {message}"),
            "{body}"
        );
    }
}

#[test]
fn durations_as_go_parses_them() {
    let ok = [
        ("0", Duration::ZERO),
        ("-0", Duration::ZERO),
        ("1m30s", Duration::from_secs(90)),
        ("1.5h", Duration::from_secs(5400)),
        ("500ms", Duration::from_millis(500)),
        (".5s", Duration::from_millis(500)),
        ("5.s", Duration::from_secs(5)),
        ("+2s", Duration::from_secs(2)),
        ("1h1h", Duration::from_secs(7200)),
        ("3µs", Duration::from_micros(3)),
        ("3us", Duration::from_micros(3)),
        ("7ns", Duration::from_nanos(7)),
        ("1.0000000001s", Duration::from_secs(1)),
    ];
    for (text, expected) in ok {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
    for bad in [
        "",
        "s",
        "5",
        "5x",
        ".s",
        "-",
        "1 s",
        "9999999999h",
        "1.5.5s",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
    }
}
