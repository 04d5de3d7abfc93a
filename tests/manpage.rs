//! The man pages and `--help` state the same flags: every flag `--help` prints appears in the
//! man page, and every flag the man page documents under OPTIONS is one `--help` knows.
//! `--help` comes from the argh doc comments in src/cli.rs; the man page is written by hand.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Runs `bin --help` and returns its standard output.
fn help_of(bin: &str) -> String {
    let out = Command::new(bin)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} --help: {e}"));
    String::from_utf8(out.stdout).expect("--help is UTF-8")
}

/// Roff to plain text enough for flag matching: `\-` is a minus, font escapes go away.
fn normalise_roff(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    let mut chars = roff.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('-') => out.push('-'),
            Some('e') => out.push('\\'),
            Some('f') => {
                // \fB, \fI, \fR, \fP, or \f(XX / \f[...]
                match chars.next() {
                    Some('(') => {
                        chars.next();
                        chars.next();
                    }
                    Some('[') => {
                        for d in chars.by_ref() {
                            if d == ']' {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some('&') => {}
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn is_flag_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// Flags in `text`: long ones (`--[a-z0-9-]+`) and short ones (`-X`, a single ASCII letter
/// standing alone, so `-vv`, `1000-based` and `wire-compatible` are not flags).
fn flags_in(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let prev_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == '-');
        if bytes[i] == '-' && prev_ok {
            if bytes.get(i + 1) == Some(&'-') {
                let start = i;
                let mut j = i + 2;
                while j < bytes.len() && is_flag_char(bytes[j]) {
                    j += 1;
                }
                let flag: String = bytes[start..j].iter().collect();
                let flag = flag.trim_end_matches('-').to_string();
                if flag.len() > 2 {
                    flags.insert(flag);
                }
                i = j;
                continue;
            }
            if let Some(&c) = bytes.get(i + 1) {
                let next = bytes.get(i + 2).copied();
                let alone = next.is_none_or(|n| !(n.is_ascii_alphanumeric() || n == '-'));
                if c.is_ascii_alphabetic() && alone {
                    flags.insert(format!("-{c}"));
                }
            }
        }
        i += 1;
    }
    flags
}

/// Whether `flag` occurs in `text` as a whole flag (`--listen` does not count inside
/// `--listen6`).
fn contains_flag(text: &str, flag: &str) -> bool {
    flags_in(text).contains(flag)
}

/// The text of the OPTIONS section's `.TP` tags: the flags the man page documents.
fn documented_flags(roff: &str) -> BTreeSet<String> {
    let mut in_options = false;
    let mut after_tp = false;
    let mut tags = String::new();
    for line in roff.lines() {
        if let Some(title) = line.strip_prefix(".SH ") {
            in_options = title.trim().trim_matches('"') == "OPTIONS";
            continue;
        }
        if !in_options {
            continue;
        }
        if line.starts_with(".TP") {
            after_tp = true;
            continue;
        }
        if after_tp {
            tags.push_str(line);
            tags.push('\n');
            after_tp = false;
        }
    }
    flags_in(&normalise_roff(&tags))
}

/// Checks one binary against one man page, both ways.
fn check(bin: &str, page: &Path) {
    let help = help_of(bin);
    let help_flags = flags_in(&help);
    assert!(
        help_flags.contains("--help"),
        "{bin} --help printed no usable help:\n{help}"
    );
    let roff = std::fs::read_to_string(page)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", page.display()));
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "EXIT STATUS",
        "EXAMPLES",
    ] {
        assert!(
            roff.lines()
                .any(|l| l.trim_end() == format!(".SH {section}")
                    || l.trim_end() == format!(".SH \"{section}\"")),
            "{} has no {section} section",
            page.display()
        );
    }
    let man = normalise_roff(&roff);
    let missing: Vec<&String> = help_flags
        .iter()
        .filter(|f| !contains_flag(&man, f))
        .collect();
    assert!(
        missing.is_empty(),
        "flags in `{bin} --help` missing from {}: {missing:?}",
        page.display()
    );
    let stale: Vec<String> = documented_flags(&roff)
        .into_iter()
        .filter(|f| !help_flags.contains(f))
        .collect();
    assert!(
        stale.is_empty(),
        "flags documented in {} that `--help` does not know: {stale:?}",
        page.display()
    );
}

fn manifest_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn btest_help_and_man_page_agree() {
    check(common::BTEST, &manifest_path("docs/btest.1"));
}

#[cfg(feature = "pro")]
#[test]
fn btest_server_pro_help_and_man_page_agree() {
    let bin = common::pro::PRO;
    // While the pro binary is still a stub it prints no help; there is nothing to compare yet.
    if !flags_in(&help_of(bin)).contains("--help") {
        common::skip("btest-server-pro prints no --help yet: man page check skipped");
        return;
    }
    check(bin, &manifest_path("docs/btest-server-pro.1"));
}

#[test]
fn flag_extraction() {
    let f = flags_in(
        "  -c, --client <HOST>  with -r: both; 1000-based, -vv, wire-compatible --listen6",
    );
    let want: BTreeSet<String> = ["-c", "--client", "-r", "--listen6"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(f, want);
    assert!(!contains_flag("--listen6 ADDR", "--listen"));
    assert_eq!(
        normalise_roff(r"\fB\-\-max\-sessions\fR \e"),
        r"--max-sessions \"
    );
}

#[test]
fn version_names_version_and_features() {
    let out = Command::new(common::BTEST)
        .arg("--version")
        .output()
        .expect("run btest --version");
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.contains(env!("CARGO_PKG_VERSION")),
        "no version: {line}"
    );
    assert!(line.contains("features:"), "no feature list: {line}");
}
