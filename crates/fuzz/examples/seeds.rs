//! Writes the seed inputs that need the project's own code: OTLP protobuf (the OTLP/JSON
//! seeds re-encoded, plain and gzip) and notes signed by the fuzz key. Run once from the
//! repository root: `cargo run -p aitrail-fuzz --example seeds`.

use std::io::Write;

use aitrail_capture::otlp::{self, Encoding};
use aitrail_core::note::{Checkpoint, NoteSigner};
use prost::Message;

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = format!("fuzz/corpus/{target}");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/seed-{name}"), data).unwrap();
}

fn main() {
    for entry in std::fs::read_dir("fuzz/corpus/otlp_json").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().trim_start_matches("seed-");
        let json = std::fs::read(&path).unwrap();
        let Ok(request) = otlp::decode(&json, Encoding::Json, false, 1 << 20) else { continue };
        let bytes = request.encode_to_vec();
        write("otlp_protobuf", name, &bytes);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        write("otlp_protobuf", &format!("{name}.gz"), &gz.finish().unwrap());
    }

    let signer = NoteSigner::from_seed("fuzz.example", [1; 32]).unwrap();
    let other = NoteSigner::from_seed("other.example", [2; 32]).unwrap();
    let cp = Checkpoint { origin: "fuzz.example/org-1".into(), size: 42, root: [9; 32] };
    let note = signer.sign(&cp.to_text()).unwrap();
    let cosigned =
        format!("{note}{}", other.sign(&cp.to_text()).unwrap().rsplit_once("\n\n").unwrap().1);
    write("checkpoint", "signed", note.as_bytes());
    write("checkpoint", "cosigned", cosigned.as_bytes());
    write("checkpoint", "body", cp.to_text().as_bytes());
    write("checkpoint", "extension", format!("{}extension line\n", cp.to_text()).as_bytes());
    write("checkpoint", "other-key", other.sign(&cp.to_text()).unwrap().as_bytes());
    write("signed_note", "checkpoint", note.as_bytes());
    write("signed_note", "cosigned", cosigned.as_bytes());
    write("signed_note", "text", signer.sign("manifest sha256 00ff\n").unwrap().as_bytes());
    write("signed_note", "verifier", signer.verifier().to_string().as_bytes());
    // A test key, no secret: the fuzz key's own seed is in the source.
    write("signed_note", "private", signer.to_private_string().as_bytes());
}
