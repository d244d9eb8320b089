//! Every committed corpus, replayed through its target without a fuzzer: what the fuzzer
//! found (and every crash it found, once fixed) stays covered by the normal tests.

use std::path::PathBuf;

/// Keeps the replay quick and the repository small (FUZZING.md: corpora are minimised).
const MAX_FILES: usize = 500;
const MAX_BYTES: u64 = 4 << 20;

#[test]
fn every_target_replays_its_corpus() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in aitrail_fuzz::TARGETS {
        let dir = root.join(name);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: no corpus: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "{}: empty corpus", dir.display());
        assert!(files.len() <= MAX_FILES, "{name}: {} files; minimise it", files.len());
        let mut bytes = 0;
        for file in files {
            let data = std::fs::read(&file).unwrap();
            bytes += data.len() as u64;
            // A panic names the file that caused it.
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "{name} panics on {}", file.display());
        }
        assert!(bytes <= MAX_BYTES, "{name}: {bytes} bytes of corpus; minimise it");
    }
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (name, _) in aitrail_fuzz::TARGETS {
        let file = root.join(format!("{name}.rs"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(text.contains(&format!("aitrail_fuzz::{name}(data)")), "{}", file.display());
    }
}
