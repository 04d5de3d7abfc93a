//! Shell completion (contrib/completions/): the bash one really completes, and every file
//! offers exactly the flags `btest --help` prints, so a new flag cannot be forgotten there.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BTEST, skip};

fn contrib(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/completions")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(contrib(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Whether `word` is a flag: `--long-name` or `-X`.
fn is_flag(word: &str) -> bool {
    let bytes = word.as_bytes();
    match bytes {
        [b'-', b'-', rest @ ..] => {
            !rest.is_empty()
                && rest
                    .iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        }
        [b'-', c] => c.is_ascii_alphabetic(),
        _ => false,
    }
}

/// The flags of `btest --help`'s option list (lines starting with a flag).
fn help_flags() -> BTreeSet<String> {
    let out = Command::new(BTEST)
        .arg("--help")
        .output()
        .expect("run btest --help");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let mut flags = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("  -")) {
        for word in line.split_whitespace() {
            let w = word.trim_end_matches(',');
            if is_flag(w) {
                flags.insert(w.to_string());
            } else {
                break;
            }
        }
    }
    assert!(
        flags.contains("--connections") && flags.contains("-c"),
        "{text}"
    );
    flags
}

/// Flags in the bash file's `switches` and `options` word lists.
fn bash_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for var in ["local switches=\"", "local options=\""] {
        let start = text.find(var).expect(var) + var.len();
        let end = start + text[start..].find('"').expect("closing quote");
        flags.extend(
            text[start..end]
                .split_whitespace()
                .filter(|w| is_flag(w))
                .map(String::from),
        );
    }
    flags
}

/// Flags in the zsh `_arguments` specs: the quoted lines, brace lists like `{-c+,--client=}`.
fn zsh_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('\'')) {
        // The exclusion list `(...)` and the description `[...]` are not the spec's flags.
        let spec = match line.strip_prefix("'(") {
            Some(rest) => &rest[rest.find(')').map_or(0, |i| i + 1)..],
            None => &line[1..],
        };
        let spec = spec.split('[').next().unwrap_or("");
        for word in spec.split([',', '{', '}', '\'', '*']) {
            let w = word.trim_end_matches(['+', '=']);
            if is_flag(w) {
                flags.insert(w.to_string());
            }
        }
    }
    flags
}

/// Flags of fish `complete -c btest -s X -l NAME` lines.
fn fish_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("complete -c btest")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            match pair[0] {
                "-s" => flags.insert(format!("-{}", pair[1])),
                "-l" => flags.insert(format!("--{}", pair[1])),
                _ => false,
            };
        }
    }
    flags
}

fn assert_same(file: &str, got: BTreeSet<String>, want: &BTreeSet<String>) {
    let missing: Vec<_> = want.difference(&got).collect();
    let stale: Vec<_> = got.difference(want).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "contrib/completions/{file} is out of step with `btest --help`: add {missing:?}, \
         remove {stale:?}"
    );
}

#[test]
fn every_completion_file_offers_exactly_the_help_flags() {
    let want = help_flags();
    assert_same("btest.bash", bash_flags(&read("btest.bash")), &want);
    assert_same("_btest", zsh_flags(&read("_btest")), &want);
    assert_same("btest.fish", fish_flags(&read("btest.fish")), &want);
}

/// Runs `script` in a bash that has loaded the completion; `None` when bash is missing.
fn bash(script: &str) -> Option<String> {
    let full = format!("source '{}'\n{script}", contrib("btest.bash").display());
    let out = match Command::new("bash").args(["--norc", "-c", &full]).output() {
        Ok(o) => o,
        Err(e) => {
            skip(&format!("bash not runnable: {e}"));
            return None;
        }
    };
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `_btest` offers for the command line `words`, completing the last word.
fn complete(words: &[&str]) -> Option<Vec<String>> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "COMP_WORDS=({}); COMP_CWORD={}; _btest; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words.len() - 1
    );
    bash(&script).map(|o| o.lines().map(String::from).collect())
}

#[test]
fn bash_completes_con_to_connections() {
    let Some(registered) = bash("complete -p btest") else {
        return;
    };
    assert!(registered.contains("-F _btest"), "{registered}");
    let Some(got) = complete(&["btest", "--con"]) else {
        return;
    };
    assert_eq!(got, ["--connections"]);
    // After a flag that takes a value, no flags are offered; a file flag offers files.
    let Some(got) = complete(&["btest", "-d", ""]) else {
        return;
    };
    assert!(got.iter().all(|w| w.is_empty()), "{got:?}");
    let Some(got) = complete(&["btest", "--json"]) else {
        return;
    };
    assert_eq!(got, ["--json", "--json-lines"]);
}

#[test]
fn zsh_and_fish_files_parse_when_those_shells_exist() {
    for (shell, file) in [("zsh", "_btest"), ("fish", "btest.fish")] {
        let path = contrib(file);
        match Command::new(shell).arg("-n").arg(&path).output() {
            Ok(out) => assert!(
                out.status.success(),
                "{shell} -n {file}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) => skip(&format!("{shell} not installed, {file} not parsed")),
        }
    }
}
