//! Compliance exports, checked offline, and their tampering named.

use super::*;

// ---------------------------------------------------------------------------------------
// Compliance export, checked offline.

/// A copy of the zip at `from` with `name`'s bytes passed through `edit`.
fn edit_zip(from: &Path, to: &Path, name: &str, edit: impl Fn(Vec<u8>) -> Vec<u8>) {
    rebuild_zip(from, to, |file_name, bytes| {
        let bytes = if file_name == name { edit(bytes) } else { bytes };
        vec![(file_name, bytes)]
    });
}

/// A copy of the zip at `from` whose members are what `members` makes of each one's name
/// and bytes, in order (none, it, or it and others), compressed at level 1.
fn rebuild_zip(
    from: &Path,
    to: &Path,
    mut members: impl FnMut(String, Vec<u8>) -> Vec<(String, Vec<u8>)>,
) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_level(Some(1)).large_file(true);
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let file_name = file.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        for (name, bytes) in members(file_name, bytes) {
            out.start_file(name, options).unwrap();
            out.write_all(&bytes).unwrap();
        }
    }
    out.finish().unwrap();
}

/// Apply `edit` to the lines of a text file (CRLF or LF kept as found).
fn edit_lines(bytes: Vec<u8>, edit: impl Fn(&mut Vec<String>)) -> Vec<u8> {
    let text = String::from_utf8(bytes).unwrap();
    let end = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut lines: Vec<String> = text.split_terminator(end).map(str::to_owned).collect();
    edit(&mut lines);
    (lines.join(end) + end).into_bytes()
}

fn verify_export(zip: &Path, key: Option<&str>) -> (bool, String) {
    let mut args = vec!["verify", "--export", zip.to_str().unwrap()];
    if let Some(key) = key {
        args.extend(["--key", key]);
    }
    let out = aitrail(&args, None);
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn an_export_verifies_offline_and_every_kind_of_tampering_is_named() {
    let (dir, ids, key) = signed_log();
    let zip = dir.path().join("compliance_export.zip");
    let data_dir = dir.path().to_str().unwrap();
    let out = aitrail(
        &["--data-dir", data_dir, "export", "--tenant-id", "tamper", "-o", zip.to_str().unwrap()],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 10 records"), "{out:?}");
    let (ok, said) = verify_export(&zip, Some(&key));
    assert!(ok, "{said}");
    assert!(
        said.contains("OK: 10 records of tenant tamper are in its log as signed at size 10"),
        "{said}"
    );
    // Without --key it still checks, against the bundle's own key, says so, and fails:
    // whoever made the bundle chose that key.
    let (ok, said) = verify_export(&zip, None);
    assert!(!ok, "an unpinned key passed: {said}");
    assert!(said.contains("(key not pinned: taken from the bundle)"), "{said}");
    assert!(said.contains("pass --key"), "{said}");
    // ... unless the bundle's key is accepted on purpose.
    let trusted =
        aitrail(&["verify", "--export", zip.to_str().unwrap(), "--trust-bundle-key"], None);
    let said = String::from_utf8_lossy(&trusted.stdout);
    assert!(trusted.status.success(), "{trusted:?}");
    assert!(said.contains("(key not pinned: taken from the bundle)"), "{said}");
    // A forged records.jsonl placed before the genuine one, under the same name: `unzip`
    // shows the first, the zip library reads the last. The bundle is refused, not read.
    let forged = dir.path().join("forged.zip");
    {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
        let mut out = zip::ZipWriter::new(std::fs::File::create(&forged).unwrap());
        // The writer refuses a name twice: written under a name of the same length, then
        // renamed in the file's bytes.
        out.start_file("recordX.jsonl", zip::write::SimpleFileOptions::default()).unwrap();
        out.write_all(b"{\"forged\": true}\n").unwrap();
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).unwrap();
            let name = file.name().unwrap().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
            out.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
            out.write_all(&bytes).unwrap();
        }
        out.finish().unwrap();
    }
    let bytes = std::fs::read(&forged).unwrap();
    let bytes: Vec<u8> = bytes.windows(13).enumerate().fold(bytes.clone(), |mut b, (i, w)| {
        if w == b"recordX.jsonl" {
            b[i + 6] = b's';
        }
        b
    });
    std::fs::write(&forged, bytes).unwrap();
    let (ok, said) = verify_export(&forged, Some(&key));
    assert!(!ok && said.contains("two members named records.jsonl"), "{said}");
    // Nothing else is needed: the data dir can be gone.
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("bundle.zip");
    std::fs::copy(&zip, &moved).unwrap();
    drop(dir);
    assert!(verify_export(&moved, Some(&key)).0);

    let other = aitrail_core::note::NoteSigner::from_seed("aitrail", [9; 32]).unwrap();
    let resign = |bytes: Vec<u8>| {
        let note = String::from_utf8(bytes).unwrap();
        let body = &note[..note.find("\n\n").unwrap() + 1];
        other.sign(body).unwrap().into_bytes()
    };
    let name = |seq: usize| format!("record {} (seq {seq})", ids[seq]);
    // (what, the file edited, the edit, lines verify must print)
    type Edit<'a> = Box<dyn Fn(Vec<u8>) -> Vec<u8> + 'a>;
    let cases: Vec<(&str, &str, Edit, Vec<String>)> = vec![
        (
            "one CSV cell",
            "conversation_logs.csv",
            Box::new(|b| edit_lines(b, |l| l[4] = l[4].replacen("gpt-4o", "gpt-5", 1))),
            vec![
                format!(
                    "conversation_logs.csv: {}: column Model Name differs from the record",
                    name(3)
                ),
                "manifest.json: conversation_logs.csv: SHA-256 differs from the manifest's".into(),
            ],
        ),
        (
            "one JSONL field",
            "records.jsonl",
            Box::new(|b| edit_lines(b, |l| l[4] = l[4].replacen("gpt-4o", "gpt-5", 1))),
            vec![
                format!("leaves.bin: {}: its leaf hash is not the logged leaf at its seq", name(4)),
                "manifest.json: records.jsonl: SHA-256 differs from the manifest's".into(),
            ],
        ),
        (
            "one record's content",
            "records.jsonl",
            Box::new(|b| edit_lines(b, |l| l[6] = l[6].replacen("prompt 6", "prompt X", 1))),
            vec![format!(
                "records.jsonl: {}: content prompt does not match its commitment",
                name(6)
            )],
        ),
        (
            "a dropped record",
            "records.jsonl",
            Box::new(|b| {
                edit_lines(b, |l| {
                    l.remove(5);
                })
            }),
            vec![
                format!(
                    "conversation_logs.csv: {}: row 7 is record {}, not this one",
                    name(6),
                    ids[5]
                ),
                "records.jsonl: holds 9 records; the manifest says 10".into(),
            ],
        ),
        (
            "reordered lines",
            "records.jsonl",
            Box::new(|b| edit_lines(b, |l| l.swap(1, 2))),
            vec![format!(
                "records.jsonl: {}: comes after seq 2: lines are out of log order",
                name(1)
            )],
        ),
        (
            "a checkpoint signed by another key",
            "checkpoint.txt",
            Box::new(resign),
            vec!["checkpoint.txt: signature check failed".into()],
        ),
        (
            "a manifest edit",
            "manifest.json",
            Box::new(|b| {
                String::from_utf8(b)
                    .unwrap()
                    .replace("\"records\": 10", "\"records\": 9")
                    .into_bytes()
            }),
            vec![
                "manifest.json: does not match the signed digest in manifest.sig: it was edited"
                    .into(),
            ],
        ),
        (
            "a manifest signed by another key",
            "manifest.sig",
            Box::new(resign),
            vec!["manifest.sig: signature check failed".into()],
        ),
    ];
    for (what, file, edit, expected) in cases {
        let tampered = elsewhere.path().join("tampered.zip");
        edit_zip(&moved, &tampered, file, edit);
        let (ok, said) = verify_export(&tampered, Some(&key));
        assert!(!ok, "{what}: went unnoticed:\n{said}");
        for line in expected {
            assert!(said.contains(&line), "{what}: expected `{line}` in:\n{said}");
        }
        assert!(said.contains("export verification FAILED"), "{what}: {said}");
    }
    // The right bundle against another key.
    let (ok, said) = verify_export(&moved, Some(&other.verifier().to_string()));
    assert!(!ok && said.contains("manifest.sig: signature check failed"), "{said}");
}

#[test]
fn an_export_streams_into_standard_output_and_pipes_without_replacing_them() {
    let (dir, _ids, key) = signed_log();
    let data_dir = dir.path().to_str().unwrap();
    let export = |output: &str| {
        aitrail(&["--data-dir", data_dir, "export", "--tenant-id", "tamper", "-o", output], None)
    };
    let out = export("-");
    assert!(out.status.success(), "{out:?}");
    let from_stdout = dir.path().join("stdout.zip");
    std::fs::write(&from_stdout, &out.stdout).unwrap();
    let (ok, said) = verify_export(&from_stdout, Some(&key));
    assert!(ok, "{said}");

    // A named pipe is written through, not renamed over (as /dev/null would be).
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = export(fifo.to_str().unwrap());
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo(), "the pipe was replaced");
    let through_pipe = dir.path().join("pipe.zip");
    std::fs::write(&through_pipe, reader.join().unwrap()).unwrap();
    assert!(verify_export(&through_pipe, Some(&key)).0);
}

#[test]
fn an_auditor_exports_through_the_server_in_every_format() {
    let (dir, _, key) = signed_log();
    let server = ServerProcess::start(dir.path());
    let auditor = ok(&aitrail(
        &[&server.remote()[..], &["keys", "create", "--role", "auditor", "--tenant-id", "tamper"]]
            .concat(),
        None,
    ));
    let auditor = auditor.trim();
    let out_dir = tempfile::tempdir().unwrap();
    let remote = ["--server", server.base.as_str(), "--api-key", auditor];
    for format in ["zip", "csv", "jsonl", "json"] {
        let file = out_dir.path().join(format!("export.{format}"));
        let args =
            [&remote[..], &["export", "--format", format, "-o", file.to_str().unwrap()]].concat();
        ok(&aitrail(&args, None));
        let bytes = std::fs::read(&file).unwrap();
        match format {
            "zip" => assert!(verify_export(&file, Some(&key)).0),
            "csv" => assert!(
                bytes.starts_with(b"Log ID,Timestamp,")
                    && bytes.split(|b| *b == b'\n').count() == 12
            ),
            "jsonl" => assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 10),
            _ => assert_eq!(serde_json::from_slice::<Vec<Value>>(&bytes).unwrap().len(), 10),
        }
    }
    // A viewer may not; the refusal is one line and no file is left behind.
    let viewer = ok(&aitrail(
        &[&server.remote()[..], &["keys", "create", "--role", "viewer", "--tenant-id", "tamper"]]
            .concat(),
        None,
    ));
    let file = out_dir.path().join("refused.zip");
    let args = [
        "--server",
        &server.base,
        "--api-key",
        viewer.trim(),
        "export",
        "-o",
        file.to_str().unwrap(),
    ];
    let out = aitrail(&args, None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{out:?}");
    assert!(!file.exists());
}

/// The auditor's verifier reads bundles their maker wrote, so a hostile one must be
/// refused quickly and in little memory: a records.jsonl that inflates to 64 MiB of
/// newlines (once: past 300 s and 4 GB at 4 GiB), one endless line, an oversized
/// manifest, and members with paths out of the folder or archives inside.
#[test]
fn a_hostile_bundle_is_refused_in_seconds_and_little_memory() {
    let (dir, _, key) = signed_log();
    let zip = dir.path().join("genuine.zip");
    let data_dir = dir.path().to_str().unwrap();
    ok(&aitrail(
        &["--data-dir", data_dir, "export", "--tenant-id", "tamper", "-o", zip.to_str().unwrap()],
        None,
    ));
    type Members = Box<dyn Fn(String, Vec<u8>) -> Vec<(String, Vec<u8>)>>;
    let cases: Vec<(&str, Members, &str)> = vec![
        (
            "newline bomb",
            Box::new(|name, mut bytes| {
                if name == "records.jsonl" {
                    bytes.resize(bytes.len() + (64 << 20), b'\n');
                }
                vec![(name, bytes)]
            }),
            "far past the manifest's",
        ),
        (
            "one endless line",
            Box::new(|name, mut bytes| {
                if name == "records.jsonl" {
                    bytes.resize(bytes.len() + (80 << 20), b' ');
                }
                vec![(name, bytes)]
            }),
            "far past the manifest's",
        ),
        (
            "oversized manifest",
            Box::new(|name, mut bytes| {
                if name == "manifest.json" {
                    bytes.resize(bytes.len() + (20 << 20), b' ');
                }
                vec![(name, bytes)]
            }),
            "manifest.json is larger than",
        ),
        (
            "a path out of the folder",
            Box::new(|name, bytes| {
                let extra = (name == "README.txt").then(|| ("../../.bashrc".into(), b"x".to_vec()));
                std::iter::once((name, bytes)).chain(extra).collect()
            }),
            "a path out of the folder",
        ),
        (
            "an absolute path",
            Box::new(|name, bytes| {
                let extra = (name == "README.txt").then(|| ("/etc/cron.d/x".into(), b"x".to_vec()));
                std::iter::once((name, bytes)).chain(extra).collect()
            }),
            "an absolute path",
        ),
        (
            "a nested archive",
            Box::new(|name, bytes| {
                let extra = (name == "README.txt").then(|| ("more.zip".into(), b"PK".to_vec()));
                std::iter::once((name, bytes)).chain(extra).collect()
            }),
            "an archive inside the archive",
        ),
    ];
    let genuine_size = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap())
        .unwrap()
        .by_name("records.jsonl")
        .unwrap()
        .size();
    for (case, members, refused) in cases {
        let hostile = dir.path().join("hostile.zip");
        rebuild_zip(&zip, &hostile, members);
        check_refused(case, &hostile, &key, refused);
        if case == "newline bomb" {
            // The same bomb, its zip headers saying it holds the genuine size: read, and
            // stopped a little past that.
            declare_size(&hostile, "records.jsonl", genuine_size as u32);
            let said = "larger than its declared uncompressed size";
            check_refused("a bomb that lies about its size", &hostile, &key, said);
        }
    }
    // The same and more with the manifest's sizes taken out (its signature then fails,
    // and the check reads on, as far as the zip says each file holds): the bounds inside
    // the reading stop each one.
    let unsized_cases: Vec<(&str, &str, &[u8], usize, &str)> = vec![
        (
            "newline bomb, no sizes",
            "records.jsonl",
            b"\n",
            64 << 20,
            "holds more than the 10 records",
        ),
        ("one endless line, no sizes", "records.jsonl", b" ", 80 << 20, "is longer than"),
        (
            "an endless CSV row, no sizes",
            "conversation_logs.csv",
            b"a",
            80 << 20,
            "a row is longer than",
        ),
        ("an endless proof line, no sizes", "proofs.jsonl", b"a", 80 << 20, "inclusion proof"),
    ];
    for (case, member, filler, n, refused) in unsized_cases {
        let hostile = dir.path().join("hostile.zip");
        rebuild_zip(&zip, &hostile, |name, mut bytes| {
            if name == "manifest.json" {
                let mut manifest: Value = serde_json::from_slice(&bytes).unwrap();
                manifest.as_object_mut().unwrap().remove("sizes");
                if member == "proofs.jsonl" {
                    manifest["proof"] = "proofs.jsonl".into();
                }
                bytes = serde_json::to_vec(&manifest).unwrap();
            }
            let mut members = Vec::new();
            if name == "leaves.bin" && member == "proofs.jsonl" {
                members.push((member.to_owned(), filler.repeat(n)));
                return members;
            }
            if name == member {
                bytes.extend(filler.repeat(n));
            }
            members.push((name, bytes));
            members
        });
        check_refused(case, &hostile, &key, refused);
    }
}

/// Set what the zip's headers (local and central) say `name` inflates to.
fn declare_size(zip: &Path, name: &str, size: u32) {
    let mut bytes = std::fs::read(zip).unwrap();
    let at: Vec<usize> = bytes
        .windows(name.len())
        .enumerate()
        .filter(|(_, w)| *w == name.as_bytes())
        .map(|(i, _)| i)
        .collect();
    let mut patched = 0;
    for i in at {
        // A local header's name is at offset 30, its size at 22; a central one's at 46 and 24.
        for (signature, name_at, size_at) in [(b"PK\x03\x04", 30, 22), (b"PK\x01\x02", 46, 24)] {
            if i >= name_at && &bytes[i - name_at..i - name_at + 4] == signature {
                let field = i - name_at + size_at;
                bytes[field..field + 4].copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
        }
    }
    assert_eq!(patched, 2, "one local and one central header name {name}");
    std::fs::write(zip, bytes).unwrap();
}

/// `verify --export` refuses the bundle at `hostile`, saying `refused`, in under 200 MiB.
fn check_refused(case: &str, hostile: &Path, key: &str, refused: &str) {
    {
        let started = std::time::Instant::now();
        let (out, peak_mib) =
            run_peak(&["verify", "--export", hostile.to_str().unwrap(), "--key", key]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{case}: {said}");
        assert!(said.contains(refused), "{case}: expected {refused:?} in {said}");
        assert!(peak_mib < 200, "{case}: peak {peak_mib} MiB");
        // Seconds, not minutes (a debug build reads the 80 MiB before it stops).
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{case}");
    }
}
