//! README.md, run as a reader runs it: every shell block, in order, pasted into one bash, against a real `aitrail serve` started by the test with the
//! binary cargo built. Then the answers are checked against what the README says they are.
//!
//! What the test does to the text, and why:
//! - the two set-up commands (`cargo run --release -- serve`, `cargo test --workspace`) are
//!   left out: the test starts the server itself, and must not run itself;
//! - a block marked `<!-- readme-test: skip: REASON -->` is left out, and the reason is
//!   printed; any other marker that is not one of those below fails the test;
//! - in a block marked `<!-- readme-test: paste the admin key -->`, `ait_…` becomes the
//!   admin key the server printed, as the reader pastes it;
//! - the README's address (`localhost:8080`, `127.0.0.1:8080`) becomes the test server's
//!   (a free port);
//! - `curl` runs with `--fail-with-body`, so an error answer fails the block as it would
//!   catch the reader's eye; and bash runs with `set -euo pipefail` for the same reason.
//!
//! `aitrail` is found where the README's `export PATH=…` line says it is
//! (`target/release` under the working directory), which the test links to the binary.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{BIN, say_skipped, serve_bare};

/// Sections whose commands a reader runs in order: each must still have some.
const SECTIONS: &[&str] = &[
    "Quick start",
    "Auditor questions",
    "Access control",
    "Integrity",
    "Compliance export",
    "Privacy",
];

/// The set-up commands: shown to the reader, never run by the test.
const SET_UP: &[&str] = &["cargo run --release -- serve", "cargo test --workspace"];

const MARK_SET_UP: &str = "set-up:";
const MARK_SKIP: &str = "skip:";
const MARK_PASTE_ADMIN_KEY: &str = "paste the admin key";
const ADMIN_KEY_PLACEHOLDER: &str = "ait_…";

/// The longest the whole walk-through may take before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(300);

/// A shell block of the README, and the marker on the line above it.
#[derive(Debug)]
struct Block {
    section: String,
    /// 1-based line of the opening fence.
    line: usize,
    marker: Option<String>,
    text: String,
}

/// Code blocks the test runs: what a reader pastes into a shell.
const SHELL: &[&str] = &["sh", "bash", "shell", "console"];
/// Code blocks that are not commands. Any other kind fails the test, so a new kind of
/// block is decided on, never silently left out.
const NOT_SHELL: &[&str] = &["json", "text", "toml", "python", "rust"];

/// Every shell block under its `## ` heading, with its `<!-- readme-test: … -->` marker.
fn shell_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let (mut section, mut marker) = (String::new(), None);
    // The block being read, and whether it is a shell block.
    let mut open: Option<(Block, bool)> = None;
    for (i, line) in readme.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```").map(str::trim);
        if let Some((block, shell)) = open.as_mut() {
            if fence == Some("") {
                let (block, shell) = open.take().unwrap();
                blocks.extend(shell.then_some(block));
            } else if *shell {
                block.text.push_str(line);
                block.text.push('\n');
            }
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim().to_owned();
        }
        if let Some(kind) = fence {
            let shell = SHELL.contains(&kind);
            assert!(
                shell || NOT_SHELL.contains(&kind),
                "README.md:{}: a ```{kind} block: run it or not?",
                i + 1
            );
            let block = Block {
                section: section.clone(),
                line: i + 1,
                marker: marker.take(),
                text: String::new(),
            };
            open = Some((block, shell));
        } else if let Some(rest) = line.trim().strip_prefix("<!-- readme-test:") {
            let rest = rest.strip_suffix("-->").expect("a readme-test marker ends on its line");
            marker = Some(rest.trim().to_owned());
        } else if !line.trim().is_empty() {
            marker = None;
        }
    }
    assert!(open.is_none(), "README.md ends inside a code block");
    blocks
}

/// A block as the test runs it, or `None` with the reason it is left out.
fn runnable(block: &Block, admin_key: &str, address: &str) -> Result<String, String> {
    let mut text = block.text.clone();
    match block.marker.as_deref() {
        None => {}
        Some(m) if m.starts_with(MARK_SKIP) => {
            let reason = m[MARK_SKIP.len()..].trim();
            assert!(!reason.is_empty(), "README.md:{}: a skip says why", block.line);
            return Err(reason.to_owned());
        }
        Some(m) if m.starts_with(MARK_SET_UP) => {
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !SET_UP.iter().any(|command| l.trim_start().starts_with(command)))
                .collect();
            text = kept.join("\n");
        }
        Some(MARK_PASTE_ADMIN_KEY) => {
            assert!(
                text.contains(ADMIN_KEY_PLACEHOLDER),
                "README.md:{}: nothing to paste the admin key into",
                block.line
            );
            text = text.replace(ADMIN_KEY_PLACEHOLDER, admin_key);
        }
        Some(other) => panic!("README.md:{}: unknown readme-test marker {other:?}", block.line),
    }
    Ok(text.replace("localhost:8080", address).replace("127.0.0.1:8080", address))
}

/// `aitrail serve` as the README starts it, its data in `dir/aitrail-data` (the default
/// the README's later commands rely on): its address and the admin key it printed.
fn serve(dir: &Path) -> (std::process::Child, String, String) {
    let (said, child, base) = serve_bare(&dir.join("aitrail-data"));
    let admin_key = said.iter().find_map(|l| l.strip_prefix("aitrail admin key: "));
    let admin_key =
        admin_key.unwrap_or_else(|| panic!("no admin key printed:\n{}", said.join("\n")));
    let address = base.strip_prefix("http://").unwrap().to_owned();
    (child, address, admin_key.trim().to_owned())
}

/// What one block printed.
struct Ran {
    section: String,
    text: String,
    stdout: String,
}

#[test]
fn every_command_of_the_readme_walkthrough_works_as_pasted() {
    for tool in ["bash", "curl"] {
        if Command::new(tool).arg("--version").output().is_err() {
            let how = format!("needs {tool} on PATH (apt-get install {tool}); .ci/run installs it");
            assert!(std::env::var_os("CI").is_none(), "README test cannot run: {how}");
            say_skipped("every_command_of_the_readme_walkthrough_works_as_pasted", &how);
            return;
        }
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let blocks = shell_blocks(&readme);
    for section in SECTIONS {
        assert!(
            blocks.iter().any(|b| b.section == *section),
            "README.md has no shell block under ## {section}"
        );
    }
    for command in SET_UP {
        assert!(
            blocks.iter().any(|b| b.text.lines().any(|l| l.trim_start().starts_with(command))),
            "the Quick start no longer shows `{command}`"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(BIN, release.join("aitrail")).unwrap();
    let (server, address, admin_key) = serve(dir.path());
    let _server = KillOnDrop(server);

    // One bash for the whole walk-through, as one terminal: each block's output in files
    // of its own, so the checks below read each answer and a failure names its block.
    let out = dir.path().join("readme-test");
    std::fs::create_dir(&out).unwrap();
    let mut script =
        String::from("set -euo pipefail\ncurl() { command curl --fail-with-body \"$@\"; }\n");
    let mut ran: Vec<&Block> = Vec::new();
    for block in &blocks {
        match runnable(block, &admin_key, &address) {
            Err(reason) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "README.md:{} ({}): not run: {reason}",
                    block.line,
                    block.section
                );
            }
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => {
                let n = ran.len();
                script.push_str(&format!(
                    "echo {n} > {out}/last\n{{\n{text}\n}} > {out}/{n}.out 2> {out}/{n}.err\n",
                    out = out.display()
                ));
                ran.push(block);
            }
        }
    }
    // Proof that bash got to the end: a block that exits early, or a heredoc left open,
    // would otherwise swallow every block after it and still look like success.
    script.push_str(&format!("echo {} > {}/done\n", ran.len(), out.display()));
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(&script).current_dir(dir.path()).stdin(Stdio::null());
    // A reader's fresh terminal has none of aitrail's settings; neither has this one.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AITRAIL_") {
            bash.env_remove(name);
        }
    }
    // Its own process group, so running out of time stops the command it is running too.
    let bash = bash.process_group(0).spawn().unwrap();
    let mut bash = KillGroupOnDrop(bash);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = bash.0.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            drop(bash);
            panic!(
                "the README's commands took longer than {DEADLINE:?}: stuck at block {}",
                std::fs::read_to_string(out.join("last")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |name: String| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    if !status.success() {
        let last: usize = read("last".into()).trim().parse().unwrap_or(0);
        let block = ran[last];
        panic!(
            "README.md:{} ({}) failed ({status}):\n{}\n--- stdout:\n{}\n--- stderr:\n{}",
            block.line,
            block.section,
            block.text,
            read(format!("{last}.out")),
            read(format!("{last}.err")),
        );
    }
    assert_eq!(read("done".into()).trim(), ran.len().to_string(), "bash stopped before the end");
    let results: Vec<Ran> = ran
        .iter()
        .enumerate()
        .map(|(n, b)| Ran {
            section: b.section.clone(),
            text: b.text.clone(),
            stdout: read(format!("{n}.out")),
        })
        .collect();
    the_answers_are_the_ones_the_readme_promises(&results);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process leading its own group: dropped, the whole group is killed.
struct KillGroupOnDrop(std::process::Child);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let group = format!("-{}", self.0.id());
            let mut kill = Command::new("kill");
            let _ = kill.args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
            let _ = self.0.wait();
        }
    }
}

/// Everything the blocks of one section printed.
fn printed(results: &[Ran], section: &str) -> String {
    results.iter().filter(|r| r.section == section).map(|r| r.stdout.as_str()).collect()
}

/// What the block whose text contains `command` printed.
fn printed_by(results: &[Ran], command: &str) -> String {
    let block = results.iter().find(|r| r.text.contains(command));
    block.unwrap_or_else(|| panic!("no README block runs {command:?}")).stdout.clone()
}

/// The JSON answers, one after the other, that the block running `command` printed.
fn answers(results: &[Ran], command: &str) -> Vec<Value> {
    let text = printed_by(results, command);
    let values = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
    values.map(|v| v.unwrap_or_else(|e| panic!("{command}: not JSON: {e}"))).collect()
}

fn records(answer: &Value) -> &Vec<Value> {
    let records = answer["records"].as_array().unwrap_or_else(|| panic!("not a listing: {answer}"));
    assert!(!records.is_empty(), "the README's data has an answer to every question");
    records
}

fn field<'a>(record: &'a Value, name: &str) -> &'a str {
    record[name].as_str().unwrap_or_default()
}

fn the_answers_are_the_ones_the_readme_promises(results: &[Ran]) {
    let quick = printed(results, "Quick start");
    assert!(quick.contains("OK: record "), "{quick}");
    assert!(
        quick.contains(
            "OK: the server verified 4 records in 1 tenant log, plus 0 in the system log and "
        ),
        "{quick}"
    );

    // The four questions, in the README's order, answered from the README's own records.
    let asked = answers(results, "v1/records?temperature_gt=0.8");
    let curls: Vec<&Value> = asked.iter().filter(|a| a.get("records").is_some()).collect();
    assert!(curls.len() >= 4, "four questions, four answers: {asked:?}");
    let hot = records(curls[0]);
    assert!(hot.iter().all(|r| field(r, "temperature").parse::<f64>().unwrap() > 0.8), "{hot:?}");
    assert_eq!(hot.len(), 2, "claude-sonnet-4 at 0.9 and command-r at 1.0: {hot:?}");
    let vs = records(curls[1]);
    let providers: std::collections::BTreeSet<&str> =
        vs.iter().map(|r| field(r, "model_provider")).collect();
    assert_eq!(providers, ["anthropic", "openai"].into(), "{vs:?}");
    let azure = records(curls[2]);
    assert!(
        azure.iter().all(|r| field(r, "model_provider") == "azure"
            && field(r, "event_time").starts_with("2026-11-")),
        "{azure:?}"
    );
    let strict = records(curls[3]);
    assert!(strict.iter().all(|r| field(r, "safety_mode") == "strict"), "{strict:?}");
    // An auditor's key reads content: the prompt the Quick start logged is there.
    assert!(strict.iter().any(|r| field(r, "prompt") == "What is AI?"), "{strict:?}");

    // The CLI asks the same questions.
    let listed = printed_by(results, "aitrail list --temperature-gt 0.8");
    for model in ["claude-sonnet-4", "command-r", "gpt-4o"] {
        assert!(listed.contains(model), "{model} in:\n{listed}");
    }
    assert!(!listed.contains("azure"), "no question here finds the azure call:\n{listed}");

    // Keys: the viewer key is listed with its label, then revoked.
    let keys = printed_by(results, "aitrail keys list");
    for label in ["chat app", "compliance", "BI dashboard"] {
        assert!(keys.contains(label), "{label} in:\n{keys}");
    }
    let revoked = |line: &str| {
        let id = line.strip_prefix("revoked ").unwrap_or_default();
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
    };
    assert!(keys.lines().any(revoked), "{keys}");

    let integrity = printed(results, "Integrity");
    for said in [
        "OK: record ",
        "extends the saved checkpoint",
        "OK: the server verified ",
        "OK: 4 records in 1 tenant log, plus ",
    ] {
        assert!(integrity.contains(said), "Integrity should say {said:?}:\n{integrity}");
    }
    let export = printed(results, "Compliance export");
    assert!(export.contains("OK: 4 records of tenant org-123"), "{export}");

    // u-42's one call (the Quick start's first record) has its content erased.
    let privacy = answers(results, "aitrail erase");
    let erased = privacy.iter().find(|a| a.get("held").is_some()).expect("the erasure's answer");
    assert_eq!(erased["records"], 1, "{erased}");
}
