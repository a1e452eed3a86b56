//! `--help` and docs/configuration.md agree: every flag a subcommand's `--help`
//! lists is in that subcommand's table of the docs and the other way round, with
//! the same default and the same environment variable. The help is the real
//! binary's (`skaffold-exporter [SUBCOMMAND] --help`), run with no
//! `SKAFFOLD_EXPORTER_*` variable set so it shows the built-in defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_skaffold-exporter");

/// What `--help` or the docs say about one flag.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Flag {
    env: Option<String>,
    default: Option<String>,
}

type Flags = BTreeMap<String, Flag>;

/// `--help`/`--version` are clap's own, described once in the docs' prose.
const CLAP_FLAGS: [&str; 2] = ["--help", "--version"];

fn help(args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--help");
    for (k, _) in std::env::vars() {
        if k.starts_with("SKAFFOLD_EXPORTER_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{args:?} --help: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The flags of a long `--help`: an entry starts at an indented `--flag` (or
/// `-x, --flag`) line and runs to the next; `[env: NAME=...]` and `[default: ...]`
/// are clap's own annotations.
fn help_flags(text: &str) -> Flags {
    // `  --flag <V>`, `      --flag`, `  -h, --help`: the flag name of an entry's first line.
    let start = |line: &str| -> Option<String> {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim_start();
        let t = match t.as_bytes() {
            [b'-', c, b',', b' ', ..] if c.is_ascii_alphabetic() => &t[4..],
            _ => t,
        };
        let name: String = t
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        ((2..=6).contains(&indent) && name.starts_with("--") && name.len() > 2).then_some(name)
    };
    // clap's `[key: value]` annotation in an entry's text.
    let annotation = |body: &str, key: &str| -> Option<String> {
        let at = body.find(&format!("[{key}: "))? + key.len() + 3;
        let end = body[at..].find(']')? + at;
        Some(body[at..end].to_owned())
    };
    let mut flags = Flags::new();
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = start(line) {
            entries.push((name, String::new()));
        } else if let Some((_, body)) = entries.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    for (name, body) in entries {
        let flag = Flag {
            // `[env: NAME=value]`: the name only.
            env: annotation(&body, "env").map(|e| e.split('=').next().unwrap().to_owned()),
            default: annotation(&body, "default"),
        };
        assert!(flags.insert(name.clone(), flag).is_none(), "{name} twice");
    }
    for f in CLAP_FLAGS {
        flags.remove(f);
    }
    flags
}

fn docs() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("docs/configuration.md")).unwrap()
}

/// The text of the `### ...` section whose heading contains `heading`.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let at = doc
        .find(&format!("### `{heading}"))
        .unwrap_or_else(|| panic!("docs/configuration.md has no section ### `{heading}"));
    let rest = &doc[at..];
    let end = rest[4..].find("\n#").map_or(rest.len(), |i| i + 4);
    &rest[..end]
}

/// The flag table of a docs section: `| `--flag` | `ENV` | `default` or prose | ...`.
/// A default is the cell when it is one code span, else none (prose such as
/// "off" or "git repository name, else `skaffold`" says there is no fixed one).
fn doc_flags(section: &str) -> Flags {
    let code = |cell: &str| -> Option<String> {
        let c = cell.trim();
        (c.len() >= 2 && c.starts_with('`') && c.ends_with('`') && c.matches('`').count() == 2)
            .then(|| c[1..c.len() - 1].to_owned())
    };
    let mut flags = Flags::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').collect();
        if cells.len() < 5 || !cells[1].trim().starts_with("`--") {
            continue;
        }
        let name = code(cells[1]).unwrap_or_else(|| panic!("one flag per row: {line}"));
        let flag = Flag {
            env: code(cells[2]),
            default: code(cells[3]),
        };
        assert!(flags.insert(name.clone(), flag).is_none(), "{name} twice");
    }
    assert!(!flags.is_empty(), "no flag table in:\n{section}");
    flags
}

fn assert_same(what: &str, help: &Flags, docs: &Flags) {
    let h: BTreeSet<_> = help.keys().collect();
    let d: BTreeSet<_> = docs.keys().collect();
    assert_eq!(
        h.difference(&d).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "{what}: in --help, not in docs/configuration.md"
    );
    assert_eq!(
        d.difference(&h).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "{what}: in docs/configuration.md, not in --help"
    );
    for (name, flag) in help {
        assert_eq!(flag, &docs[name], "{what} {name}: --help vs docs");
    }
}

#[test]
fn run_and_the_bare_command_match_the_docs() {
    let doc = docs();
    let documented = doc_flags(section(&doc, "skaffold-exporter run"));
    let run = help_flags(&help(&["run"]));
    assert_same("run", &run, &documented);
    // No subcommand runs the exporter with the same flags.
    assert_same("skaffold-exporter", &help_flags(&help(&[])), &documented);
    // Every flag of the live exporter has a variable.
    for (name, flag) in &run {
        assert!(flag.env.is_some(), "run {name} has no environment variable");
    }
}

#[test]
fn demo_matches_the_docs() {
    let doc = docs();
    let demo_section = section(&doc, "skaffold-exporter demo");
    // `demo` takes `run`'s flags except the two it has no use for (and hides).
    let mut documented = doc_flags(section(&doc, "skaffold-exporter run"));
    for hidden in ["--skaffold-addr", "--skaffold-http"] {
        assert!(
            demo_section.contains(&format!("`{hidden}`")),
            "the demo section says why {hidden} is not listed"
        );
        documented.remove(hidden);
    }
    documented.extend(doc_flags(demo_section));
    let demo = help_flags(&help(&["demo"]));
    assert!(!demo.contains_key("--skaffold-addr"), "demo ignores it");
    assert_same("demo", &demo, &documented);
}

#[test]
fn replay_matches_the_docs() {
    let doc = docs();
    let documented = doc_flags(section(&doc, "skaffold-exporter replay"));
    assert_same("replay", &help_flags(&help(&["replay"])), &documented);
}

#[test]
fn every_subcommand_has_a_section_and_the_help_says_what_it_does() {
    let top = help(&[]);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert_eq!(commands, ["run", "demo", "replay"], "{top}");
    let doc = docs();
    for c in commands {
        section(&doc, &format!("skaffold-exporter {c}"));
        let text = help(&[c]);
        let about = text.lines().next().unwrap_or_default();
        assert!(about.len() > 20, "{c} --help says what it does: {about:?}");
    }
}

#[test]
fn the_help_parser_reads_defaults_and_variables() {
    // The parser above must see what it compares, or the tests could not fail.
    let run = help_flags(&help(&["run"]));
    assert_eq!(
        run["--buckets"],
        Flag {
            env: Some("SKAFFOLD_EXPORTER_BUCKETS".into()),
            default: Some("0.1,0.25,0.5,1,2.5,5,10,20,30,60,120,300,600,900,1800,3600".into()),
        }
    );
    assert_eq!(run["--allow-control"].default, None);
    assert!(run.len() >= 15, "{run:?}");
    let table = "| `--x` | `X` | `1` | y |\n| `--z` | | off | w |\n";
    let t = doc_flags(table);
    assert_eq!(t["--x"].default.as_deref(), Some("1"));
    assert_eq!(t["--z"].default, None);
}
