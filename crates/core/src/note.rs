//! C2SP signed notes (Go's `sumdb/note`) with Ed25519, and C2SP tlog checkpoints.
//!
//! A signed note is the text (ending in a newline), a blank line, then one line per
//! signature: `— <key name> <base64(key id ‖ signature)>`. The key id is the first four
//! bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key); keys are written
//! `<name>+<key id hex>+<base64(0x01 ‖ key)>` (private: `PRIVATE+KEY+…` with the seed).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The algorithm byte for Ed25519 keys.
const ALG_ED25519: u8 = 0x01;
/// The start of each signature line: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("no signature by {name}+{key_id:08x} on the note")]
    NotSignedBy { name: String, key_id: u32 },
    #[error(
        "the signature by {name} does not verify: the note was altered or signed by another key"
    )]
    BadSignature { name: String },
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

/// A key name: non-empty, no whitespace, no `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Split `name+hash+base64`, check the hash's form and decode the key bytes (with the
/// algorithm byte stripped).
fn parse_key_parts(s: &str) -> Result<(&str, u32, [u8; 32]), NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(hash), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::MalformedKey("expected name+keyid+key"));
    };
    if !valid_name(name) {
        return Err(NoteError::MalformedKey("invalid key name"));
    }
    if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(NoteError::MalformedKey("key id must be 8 lower-case hex digits"));
    }
    let id = u32::from_str_radix(hash, 16).map_err(|_| NoteError::MalformedKey("bad key id"))?;
    let raw = B64.decode(b64).map_err(|_| NoteError::MalformedKey("key is not base64"))?;
    let (&alg, key) = raw.split_first().ok_or(NoteError::MalformedKey("empty key"))?;
    if alg != ALG_ED25519 {
        return Err(NoteError::MalformedKey("unknown key algorithm (only Ed25519, 0x01)"));
    }
    let key: [u8; 32] =
        key.try_into().map_err(|_| NoteError::MalformedKey("Ed25519 keys are 32 bytes"))?;
    Ok((name, id, key))
}

/// A public key that checks signatures on notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Verifier {
    /// Parse `name+keyid+base64(0x01 ‖ key)`; the key id must match name and key.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, id, key) = parse_key_parts(s.trim())?;
        if key_id(name, &key) != id {
            return Err(NoteError::MalformedKey("key id does not match name and key"));
        }
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::MalformedKey("not an Ed25519 public key"))?;
        Ok(Self { name: name.to_owned(), key_id: id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Check `msg` is a well-formed signed note carrying a valid signature by this key;
    /// returns the note's text. Signatures by other keys are ignored.
    pub fn open<'a>(&self, msg: &'a str) -> Result<&'a str, NoteError> {
        let (text, sigs) = split_note(msg)?;
        let mut found = false;
        for line in sigs.lines() {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(NoteError::Malformed("signature line must start with an em dash"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or(NoteError::Malformed("signature line needs a name and a signature"))?;
            let sig =
                B64.decode(b64).map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if !valid_name(name) || sig.len() < 5 {
                return Err(NoteError::Malformed("bad signature line"));
            }
            let id = u32::from_be_bytes([sig[0], sig[1], sig[2], sig[3]]);
            if name != self.name || id != self.key_id {
                continue;
            }
            let sig = Signature::from_slice(&sig[4..])
                .map_err(|_| NoteError::BadSignature { name: name.to_owned() })?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature { name: name.to_owned() })?;
            found = true;
        }
        if found {
            Ok(text)
        } else {
            Err(NoteError::NotSignedBy { name: self.name.clone(), key_id: self.key_id })
        }
    }

    /// A short, stable fingerprint for people: SHA-256 of the public key, first 8 bytes, hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.key.as_bytes())[..8])
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }
}

/// Split a signed note into text (with its final newline) and the signature block.
fn split_note(msg: &str) -> Result<(&str, &str), NoteError> {
    if msg.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control characters other than newline"));
    }
    let split =
        msg.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed("signature block must end with a newline"));
    }
    Ok((text, sigs))
}

/// A private key that signs notes. Its Debug never shows the key.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.key_id)
    }
}

impl NoteSigner {
    /// A signer from a 32-byte Ed25519 seed (make it with a CSPRNG).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::MalformedKey("invalid key name"));
        }
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key_id, key })
    }

    /// Parse `PRIVATE+KEY+name+keyid+base64(0x01 ‖ seed)`.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let rest = s
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey("expected PRIVATE+KEY+…"))?;
        let (name, id, seed) = parse_key_parts(rest)?;
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != id {
            return Err(NoteError::MalformedKey("key id does not match name and key"));
        }
        Ok(signer)
    }

    /// The `PRIVATE+KEY+…` form, for the key file. Secret: never log it.
    pub fn to_private_string(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }

    /// A secret for `purpose`, derived from this key: every node that holds the log key
    /// has it, and nobody else, so there is one secret to hand the nodes, not two.
    pub fn derive_secret(&self, purpose: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"aitrail.derived-secret.v1\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(self.key.as_bytes());
        h.finalize().into()
    }

    pub fn verifier(&self) -> Verifier {
        Verifier { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// Sign `text` (which must end in a newline): the whole signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("text must end with a newline"));
        }
        if text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed("control characters other than newline"));
        }
        let sig = self.key.sign(text.as_bytes());
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        Ok(format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw)))
    }
}

/// A C2SP tlog checkpoint body: origin, tree size, root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`.
    pub fn to_text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// Parse a checkpoint body (extension lines after the root are allowed and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::MalformedCheckpoint("no origin line"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse().ok())
            .ok_or(NoteError::MalformedCheckpoint("tree size must be a decimal number"))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r).ok())
            .ok_or(NoteError::MalformedCheckpoint("root must be 32 bytes of base64"))?;
        Ok(Self { origin: origin.to_owned(), size, root })
    }

    /// Verify a signed checkpoint note with `verifier` and parse its body.
    pub fn open(note: &str, verifier: &Verifier) -> Result<Self, NoteError> {
        Self::parse(verifier.open(note)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_open_round_trips_and_detects_edits() {
        let s = NoteSigner::from_seed("audit.example.com", [7; 32]).unwrap();
        let v = Verifier::parse(&s.verifier().to_string()).unwrap();
        assert_eq!(v, s.verifier());
        let cp = Checkpoint { origin: "audit.example.com/org-1".into(), size: 42, root: [9; 32] };
        let note = s.sign(&cp.to_text()).unwrap();
        assert_eq!(Checkpoint::open(&note, &v).unwrap(), cp);
        let edited = note.replace("\n42\n", "\n43\n");
        assert!(matches!(Checkpoint::open(&edited, &v), Err(NoteError::BadSignature { .. })));
        let other = NoteSigner::from_seed("audit.example.com", [8; 32]).unwrap();
        assert!(matches!(other.verifier().open(&note), Err(NoteError::NotSignedBy { .. })));
        assert_eq!(NoteSigner::parse(&s.to_private_string()).unwrap().verifier(), v);
        assert!(!format!("{s:?}").contains(&s.to_private_string()[12..]));
    }
}
