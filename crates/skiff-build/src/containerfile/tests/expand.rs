//! Variable expansion and quote removal, against docker's shell lexer.

use super::*;

/// The variables these tests see: E is set but empty, U is never set.
fn vars(name: &str) -> Option<String> {
    let value = match name {
        "A" => "a-b-c",
        "E" => "",
        "SP" => "x  y",
        "PATH" => "/usr/bin:/bin",
        "FILE" => "dir/archive.tar.gz",
        "STAR" => "a*b",
        "ÜBER" => "ü",
        "1" => "one",
        _ => return None,
    };
    Some(value.to_string())
}

fn word(raw: &str) -> Result<String, ExpandError> {
    Expander {
        escape: '\\',
        lookup: &vars,
    }
    .word(raw)
}

fn words(raw: &str) -> Result<Vec<String>, ExpandError> {
    Expander {
        escape: '\\',
        lookup: &vars,
    }
    .words(raw)
}

fn ok(raw: &str) -> String {
    match word(raw) {
        Ok(w) => w,
        Err(e) => panic!("{raw:?}: {e}"),
    }
}

#[test]
fn plain_variables() {
    assert_eq!(ok("$A"), "a-b-c");
    assert_eq!(ok("${A}"), "a-b-c");
    assert_eq!(ok("pre${A}post"), "prea-b-cpost");
    assert_eq!(ok("$A.txt"), "a-b-c.txt");
    assert_eq!(ok("$U"), "");
    assert_eq!(ok("${U}x"), "x");
    assert_eq!(ok("${ÜBER}"), "ü");
    assert_eq!(ok("$1x"), "onex");
    assert_eq!(ok("$"), "$");
    assert_eq!(ok("a$ b"), "a$ b");
    assert_eq!(ok("$$"), "");
    assert_eq!(ok("cost: $5"), "cost: ");
}

#[test]
fn quotes_and_escapes() {
    assert_eq!(ok("'$A'"), "$A");
    assert_eq!(ok("\"$A\""), "a-b-c");
    assert_eq!(ok("\"it's\""), "it's");
    assert_eq!(ok("'say \"hi\"'"), "say \"hi\"");
    assert_eq!(ok("\\$A"), "$A");
    assert_eq!(ok("a\\ b"), "a b");
    assert_eq!(ok("\\\\"), "\\");
    assert_eq!(ok("end\\"), "end");
    // In double quotes only `"`, `$` and the escape character are escaped.
    assert_eq!(ok("\"a\\\"b\""), "a\"b");
    assert_eq!(ok("\"a\\nb\""), "a\\nb");
    assert_eq!(ok("\"\\$A\""), "$A");
    assert_eq!(ok("\"a\\\\b\""), "a\\b");
    assert_eq!(ok("'a\\b'"), "a\\b");
    assert_eq!(ok("x\"\"y''z"), "xyz");
}

#[test]
fn backtick_escape() {
    let expander = Expander {
        escape: '`',
        lookup: &vars,
    };
    assert_eq!(expander.word("`$A").as_deref(), Ok("$A"));
    assert_eq!(expander.word("C:\\$A").as_deref(), Ok("C:\\a-b-c"));
    assert_eq!(expander.word("\"a`\"b\"").as_deref(), Ok("a\"b"));
    assert_eq!(
        expander.words("a` b c").as_deref(),
        Ok(&["a b".to_string(), "c".to_string()][..])
    );
}

#[test]
fn default_and_alternative_values() {
    assert_eq!(ok("${A:-d}"), "a-b-c");
    assert_eq!(ok("${U:-d}"), "d");
    assert_eq!(ok("${E:-d}"), "d");
    assert_eq!(ok("${A-d}"), "a-b-c");
    assert_eq!(ok("${U-d}"), "d");
    assert_eq!(ok("${E-d}"), "");
    assert_eq!(ok("${A:+x}"), "x");
    assert_eq!(ok("${E:+x}"), "");
    assert_eq!(ok("${U:+x}"), "");
    assert_eq!(ok("${A+x}"), "x");
    assert_eq!(ok("${E+x}"), "x");
    assert_eq!(ok("${U+x}"), "");
    assert_eq!(ok("${U:-${E:-${A}}}"), "a-b-c");
    assert_eq!(ok("${U:-\"q s\"}"), "q s");
    assert_eq!(ok("${U:-'$A'}"), "$A");
    assert_eq!(ok("\"${U:-a b}\""), "a b");
    assert_eq!(ok("${U:-a\\}b}"), "a}b");
    assert_eq!(ok("${U:-}"), "");
}

#[test]
fn required_values() {
    assert_eq!(ok("${A?}"), "a-b-c");
    assert_eq!(ok("${E?}"), "");
    assert_eq!(
        word("${U?}"),
        Err(ExpandError::Required {
            name: "U".into(),
            message: "is not allowed to be unset".into()
        })
    );
    assert_eq!(
        word("${E:?}").map_err(|e| e.to_string()),
        Err("E: is not allowed to be empty".into())
    );
    assert_eq!(
        word("${U:?set U first}").map_err(|e| e.to_string()),
        Err("U: set U first".into())
    );
}

#[test]
fn pattern_trimming() {
    assert_eq!(ok("${A#*-}"), "b-c");
    assert_eq!(ok("${A##*-}"), "c");
    assert_eq!(ok("${A%-*}"), "a-b");
    assert_eq!(ok("${A%%-*}"), "a");
    assert_eq!(ok("${FILE##*/}"), "archive.tar.gz");
    assert_eq!(ok("${FILE%.*}"), "dir/archive.tar");
    assert_eq!(ok("${FILE%%.*}"), "dir/archive");
    assert_eq!(ok("${FILE#nomatch}"), "dir/archive.tar.gz");
    assert_eq!(ok("${PATH#/usr}"), "/bin:/bin");
    assert_eq!(ok("${A#?}"), "-b-c");
    assert_eq!(ok("${A#[a-b]-}"), "b-c");
    assert_eq!(ok("${A#[!a]}"), "a-b-c");
    assert_eq!(ok("${STAR#a\\*}"), "b");
    assert_eq!(ok("${STAR#a*}"), "*b");
    assert_eq!(ok("${U#x}"), "");
}

#[test]
fn pattern_replacement() {
    assert_eq!(ok("${A/-/_}"), "a_b-c");
    assert_eq!(ok("${A//-/_}"), "a_b_c");
    // Docker, unlike bash, needs the second `/`.
    assert_eq!(word("${A//-}"), Err(ExpandError::MissingSlash));
    assert_eq!(ok("${PATH//:/ }"), "/usr/bin /bin");
    assert_eq!(ok("${A/b*/X}"), "a-X");
    assert_eq!(ok("${A//[ac]/.}"), ".-b-.");
    assert_eq!(ok("${A/zz/X}"), "a-b-c");
    assert_eq!(ok("${A/\\//X}"), "a-b-c");
}

#[test]
fn syntax_errors() {
    let unterminated = |what: &str| ExpandError::Unterminated(what.into());
    assert_eq!(word("'abc"), Err(unterminated("single-quote")));
    assert_eq!(word("\"abc"), Err(unterminated("double-quote")));
    assert_eq!(word("${A"), Err(ExpandError::MissingBrace));
    assert_eq!(word("${"), Err(ExpandError::MissingBrace));
    assert_eq!(word("${A:-x"), Err(ExpandError::MissingBrace));
    assert_eq!(word("${}"), Err(ExpandError::BadSubstitution));
    assert_eq!(word("${:-x}"), Err(ExpandError::BadSubstitution));
    assert_eq!(word("${{A}}"), Err(ExpandError::BadSubstitution));
    assert_eq!(
        word("${A:#x}"),
        Err(ExpandError::UnsupportedModifier(":#".into()))
    );
    assert_eq!(
        word("${A!}"),
        Err(ExpandError::UnsupportedModifier("!".into()))
    );
    assert_eq!(word("${A/x"), Err(ExpandError::MissingSlash));
    assert_eq!(word("${A/x/y"), Err(ExpandError::MissingBrace));
    assert_eq!(
        word("'abc").map_err(|e| e.to_string()),
        Err("unexpected end of statement while looking for matching single-quote".into())
    );
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}x{}", "${U:-".repeat(10_000), "}".repeat(10_000));
    assert!(matches!(word(&deep), Err(ExpandError::TooDeep(_))));
    let fine = format!("{}x{}", "${U:-".repeat(20), "}".repeat(20));
    assert_eq!(ok(&fine), "x");
}

#[test]
fn huge_pattern_work_is_refused() {
    let long = "a".repeat(100_000);
    let lookup = |_: &str| Some(long.clone());
    let expander = Expander {
        escape: '\\',
        lookup: &lookup,
    };
    let pattern = format!("${{V#{}}}", "?".repeat(1000));
    assert_eq!(
        expander.word(&pattern),
        Err(ExpandError::TooLarge {
            pattern: 1000,
            value: 100_000
        })
    );
    assert_eq!(expander.word("${V#a}").map(|v| v.len()), Ok(99_999));
    assert_eq!(expander.word("${V//a/b}").map(|v| v.len()), Ok(100_000));
}

#[test]
fn words_split_on_unquoted_blanks() {
    let w = |raw: &str| words(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
    assert_eq!(w("a b  c"), strings(&["a", "b", "c"]));
    assert_eq!(w("  \"a b\" c "), strings(&["a b", "c"]));
    assert_eq!(w("'a  b'\"c d\"e"), strings(&["a  bc de"]));
    assert_eq!(w("$SP"), strings(&["x", "y"]));
    assert_eq!(w("\"$SP\""), strings(&["x  y"]));
    assert_eq!(w("pre$SP"), strings(&["prex", "y"]));
    assert_eq!(w("a\\ b"), strings(&["a b"]));
    assert_eq!(w("''"), Vec::<String>::new());
    assert_eq!(w("$U $E"), Vec::<String>::new());
    assert_eq!(w(""), Vec::<String>::new());
    assert_eq!(
        words("\"a"),
        Err(ExpandError::Unterminated("double-quote".into()))
    );
}

#[test]
fn heredoc_bodies_keep_quotes_and_most_escapes() {
    let expander = Expander {
        escape: '\\',
        lookup: &vars,
    };
    let body = "echo \"$A\" '$A' \\$A \\\\ \\t ${U:-d}\n";
    assert_eq!(
        expander.heredoc(body).as_deref(),
        Ok("echo \"a-b-c\" 'a-b-c' $A \\ \\t d\n")
    );
    assert_eq!(expander.heredoc("${A"), Err(ExpandError::MissingBrace));
}
