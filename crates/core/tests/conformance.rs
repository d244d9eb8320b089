//! Conformance with implementations we did not write: the vectors in tests/vectors (copied
//! unchanged from their sources, named with their licences in tests/vectors/README.md) and
//! the ct-merkle crate.

use std::path::PathBuf;

use aitrail_core::merkle::{
    Hash, MemoryTree, consistency_proof, inclusion_proof, leaf_hash, verify_consistency,
    verify_inclusion,
};
use aitrail_core::note::{Checkpoint, NoteSigner, Verifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

fn vectors() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    assert!(dir.is_dir(), "conformance vectors not found at {}", dir.display());
    dir
}

/// Every `*.json` below a folder, recursively, sorted.
fn json_files(dir: PathBuf) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap_or("")).unwrap()
}

fn b64_list(v: &Value) -> Vec<Vec<u8>> {
    v.as_array().map(|a| a.iter().map(b64).collect()).unwrap_or_default()
}

#[test]
fn rfc6962_inclusion_vectors() {
    let files = json_files(vectors().join("rfc6962/inclusion"));
    assert!(files.len() > 50, "expected the whole inclusion suite, found {}", files.len());
    let (mut ok, mut refused) = (0, 0);
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let result = verify_inclusion(
            &b64(&v["leafHash"]),
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
            &b64_list(&v["proof"]),
            &b64(&v["root"]),
        );
        let want_err = v["wantErr"].as_bool().unwrap();
        assert_eq!(result.is_err(), want_err, "{}: {} gave {result:?}", f.display(), v["desc"]);
        if want_err { refused += 1 } else { ok += 1 }
    }
    assert!(ok > 0 && refused > 0);
}

#[test]
fn rfc6962_consistency_vectors() {
    let files = json_files(vectors().join("rfc6962/consistency"));
    assert!(files.len() > 50, "expected the whole consistency suite, found {}", files.len());
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let result = verify_consistency(
            v["size1"].as_u64().unwrap(),
            v["size2"].as_u64().unwrap(),
            &b64_list(&v["proof"]),
            &b64(&v["root1"]),
            &b64(&v["root2"]),
        );
        let want_err = v["wantErr"].as_bool().unwrap();
        assert_eq!(result.is_err(), want_err, "{}: {} gave {result:?}", f.display(), v["desc"]);
    }
}

#[test]
fn signed_note_vectors() {
    let dir = vectors().join("signed-note");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("vectors.json")).unwrap()).unwrap();
    let signs = v["sign"].as_array().unwrap();
    assert!(!signs.is_empty());
    for case in signs {
        let signer = NoteSigner::parse(case["signer_key"].as_str().unwrap()).unwrap();
        assert_eq!(signer.verifier().to_string(), case["verifier_key"].as_str().unwrap());
        let note = signer.sign(case["text"].as_str().unwrap()).unwrap();
        assert_eq!(note, case["signed_note"].as_str().unwrap(), "{}", case["desc"]);
    }
    for case in v["verify"].as_array().unwrap() {
        let verifier = Verifier::parse(case["verifier_key"].as_str().unwrap()).unwrap();
        let note = match case.get("signed_note_file") {
            Some(file) => std::fs::read_to_string(dir.join(file.as_str().unwrap())).unwrap(),
            None => case["signed_note"].as_str().unwrap().to_owned(),
        };
        let want = case["want_valid"].as_bool().unwrap();
        assert_eq!(verifier.open(&note).is_ok(), want, "{}", case["desc"]);
        if want {
            let mut tampered = note.clone();
            tampered.insert(0, 'x');
            assert!(verifier.open(&tampered).is_err(), "{}: tampered text accepted", case["desc"]);
        }
    }
    let bad = v["bad_verifier_keys"].as_array().unwrap();
    assert!(!bad.is_empty());
    for case in bad {
        assert!(
            Verifier::parse(case["key"].as_str().unwrap()).is_err(),
            "accepted: {}",
            case["why"]
        );
    }
}

/// The Tessera test log: every checkpoint verifies, and the leaf hashes of its entry
/// bundles rebuild each checkpoint's root; the stored level-0 tile agrees.
#[test]
fn tessera_log_rebuilds_every_checkpoint() {
    let dir = vectors().join("tessera-log");
    let key = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";
    let verifier = Verifier::parse(key).unwrap();
    let latest =
        Checkpoint::open(&std::fs::read_to_string(dir.join("checkpoint")).unwrap(), &verifier)
            .unwrap();
    // The full entry bundle holds every entry: 2-byte big-endian length, then the bytes.
    let bundle = std::fs::read(dir.join(format!("tile/entries/000.p/{}", latest.size))).unwrap();
    let mut entries = Vec::new();
    let mut rest = &bundle[..];
    while !rest.is_empty() {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        entries.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    assert_eq!(entries.len() as u64, latest.size);
    assert_eq!(entries[0], b"one");
    let tile = std::fs::read(dir.join(format!("tile/0/000.p/{}", latest.size))).unwrap();
    let mut tree = MemoryTree::new();
    let mut checked = 0;
    for (i, e) in entries.iter().enumerate() {
        let leaf = leaf_hash(e);
        assert_eq!(&tile[32 * i..32 * (i + 1)], leaf.as_slice(), "tile hash {i}");
        tree.push(leaf);
        let size = i as u64 + 1;
        let path = dir.join(format!("checkpoint.{size}"));
        if path.exists() {
            let cp = Checkpoint::open(&std::fs::read_to_string(path).unwrap(), &verifier).unwrap();
            assert_eq!(cp.origin, "example.com/log/testdata");
            assert_eq!(cp.size, size);
            assert_eq!(cp.root, tree.root(), "root at size {size}");
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} checkpoints found");
    assert_eq!(tree.root(), latest.root);
}

// ----- Property tests against ct-merkle, an independent implementation ------------------

type CtTree = ct_merkle::mem_backed_tree::MemoryBackedTree<sha2::Sha256, Vec<u8>>;

fn entry(i: u64) -> Vec<u8> {
    format!("entry {i}").into_bytes()
}

fn flat(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// Every tree size up to 1,000: the same root, inclusion proofs for the first, last and a
/// middle leaf, and consistency proofs from sizes 1, n/2 and n-1.
#[test]
fn agrees_with_ct_merkle_for_every_size_up_to_1000() {
    let mut ours = MemoryTree::new();
    let mut theirs = CtTree::new();
    for n in 1..=1000u64 {
        ours.push(leaf_hash(&entry(n - 1)));
        theirs.push(entry(n - 1));
        assert_eq!(ours.root().as_slice(), theirs.root().as_bytes().as_slice(), "root at {n}");
        for i in [0, n / 2, n - 1] {
            let p = inclusion_proof(&mut &ours, i, n).unwrap();
            assert_eq!(
                flat(&p),
                theirs.prove_inclusion(i as usize).as_bytes(),
                "inclusion {i} of {n}"
            );
        }
        for m in [1, n / 2, n - 1] {
            if m == 0 || m >= n {
                continue;
            }
            let p = consistency_proof(&mut &ours, m, n).unwrap();
            let theirs_p = theirs.prove_consistency((n - m) as usize);
            assert_eq!(flat(&p), theirs_p.as_bytes(), "consistency {m} -> {n}");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Random sizes, leaves and positions: proofs equal ct-merkle's and verify.
    #[test]
    fn random_proofs_match_ct_merkle(n in 1u64..1000, i_frac in 0.0f64..1.0, m_frac in 0.0f64..1.0, salt: u64) {
        let mut ours = MemoryTree::new();
        let mut theirs = CtTree::new();
        for k in 0..n {
            let e = format!("{salt}/{k}").into_bytes();
            ours.push(leaf_hash(&e));
            theirs.push(e);
        }
        let i = ((n as f64) * i_frac) as u64 % n;
        let p = inclusion_proof(&mut &ours, i, n).unwrap();
        proptest::prop_assert_eq!(flat(&p), theirs.prove_inclusion(i as usize).as_bytes().to_vec());
        let leaf = leaf_hash(&format!("{salt}/{i}").into_bytes());
        proptest::prop_assert!(verify_inclusion(&leaf, i, n, &p, &ours.root()).is_ok());
        let m = 1 + ((n as f64) * m_frac) as u64 % n;
        if m < n {
            let p = consistency_proof(&mut &ours, m, n).unwrap();
            proptest::prop_assert_eq!(flat(&p), theirs.prove_consistency((n - m) as usize).as_bytes().to_vec());
            let old = MemoryTree::from_leaves((0..m).map(|k| leaf_hash(&format!("{salt}/{k}").into_bytes())));
            proptest::prop_assert!(verify_consistency(m, n, &p, &old.root(), &ours.root()).is_ok());
        }
    }
}
