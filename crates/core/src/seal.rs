//! Content sealed for storage: crypto-shredding (docs/PRIVACY.md).
//!
//! A record's content (its salt, prompt, response and prompt_variables, previews
//! included) is stored only as AES-256-GCM ciphertext under a *data key*; there is
//! one data key per (tenant, user, session), so erasing a person or a session destroys
//! exactly the keys of the selected records, and whatever copies of the ciphertext remain
//! in a database's pages, its write-ahead log or a backup can no longer be read.
//!
//! Data keys are stored only wrapped (sealed the same way) under a *bucket key*: each
//! (tenant, user) falls in one of [`BUCKETS`] buckets, and each bucket has one current
//! key. Bucket keys are stored only wrapped under the *content key*, which is derived
//! from the log key and is in no database. So destroying a data key for good needs only
//! the few bucket keys to be rewritten, not every data key: erasure rewraps the surviving
//! keys of each bucket it touches under a new bucket key and destroys the old one, after
//! which no copy of a destroyed data key, in any page or log, can be unwrapped.
//! (Data keys stored before buckets were wrapped under the content key itself.)
//!
//! ```text
//! sealed     = 0x01 ‖ nonce(12) ‖ AES-256-GCM(data key, nonce, plain, aad)
//! plain      = salt(32) ‖ field × 3 (prompt, response, prompt_variables)
//! field      = 0x00 (absent) | 0x01 ‖ u32 big-endian length ‖ bytes
//! aad        = "aitrail.content.v1\0" ‖ record id (16 bytes)
//! wrapped    = 0x01 ‖ nonce(12) ‖ AES-256-GCM(bucket key, nonce, data key,
//!              "aitrail.data-key.v1\0" ‖ tenant ‖ 0x00 ‖ key id (a UUID, 16 bytes))
//! bucket key = 0x01 ‖ nonce(12) ‖ AES-256-GCM(content key, nonce, bucket key,
//!              "aitrail.bucket-key.v1\0" ‖ bucket (u16 big-endian) ‖ key id (16 bytes))
//! bucket     = the first two bytes of SHA-256("aitrail.key-bucket.v1\0" ‖ tenant ‖ 0x00
//!              ‖ user ‖ 0x00 ‖ session, or "" when there is a user), big-endian, mod 4096
//! ```
//!
//! The associated data binds a ciphertext to its record and a wrapped key to its tenant
//! (or bucket) and id, so a row moved to another record or key fails to open rather than
//! lying. Nonces are random (96 bits, given by the caller: this module does no I/O). A data
//! key seals one (user, session)'s content, and a bucket key one wrap per data key of its
//! bucket: far fewer messages per key than the 2^32 under which random 96-bit nonces are
//! safe (the content key wraps a bucket key per erasure of its bucket). AES-GCM
//! rather than XChaCha20-Poly1305 for speed: with the CPU's AES and carry-less multiply
//! instructions it opens a record's content several times faster (a full verify opens
//! every record's).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use uuid::Uuid;
use zeroize::Zeroize;

use crate::entry::{CONTENT_FIELDS, Content, KeyedHashes};

/// Length of the random nonce every seal takes.
pub const NONCE_LEN: usize = 12;

/// The version byte every sealed value starts with.
const VERSION: u8 = 1;
const CONTENT_TAG: &[u8] = b"aitrail.content.v1\0";
const DATA_KEY_TAG: &[u8] = b"aitrail.data-key.v1\0";
const BUCKET_KEY_TAG: &[u8] = b"aitrail.bucket-key.v1\0";
const BUCKET_TAG: &[u8] = b"aitrail.key-bucket.v1\0";

/// How many buckets of data keys there are, each with one current [`BucketKey`]: the
/// table of bucket keys stays small (a few hundred KiB) however many data keys there are,
/// and an erasure rewraps about 1/4096 of the data keys per bucket it touches.
pub const BUCKETS: u16 = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Wrong key, wrong record, or altered bytes: AEAD authentication failed.
    #[error(
        "the sealed bytes do not open with this key for this record: altered, moved, or sealed under another key"
    )]
    Unauthentic,
    #[error("sealed bytes of an unknown format (version {0})")]
    Version(u8),
    #[error("sealed content is malformed: {0}")]
    Malformed(&'static str),
}

/// The root key-encryption key: bucket keys are stored only wrapped under it (and data
/// keys stored before buckets were). Derived from the log key
/// (`NoteSigner::derive_secret("content-keys")`), so it is in no database.
#[derive(Clone)]
pub struct ContentKey {
    cipher: Aes256Gcm,
    /// The verifier of the log key it was derived from, when it was: a store opened with
    /// it belongs to that log, and refuses a key of another before sealing anything.
    log: Option<String>,
}

/// A data key: the content of one (tenant, user, session) is sealed under it.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

/// The key of one bucket of data keys: they are stored only wrapped under it.
#[derive(Clone)]
pub struct BucketKey {
    cipher: Aes256Gcm,
    raw: [u8; 32],
}

impl std::fmt::Debug for BucketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BucketKey(..)")
    }
}

impl Drop for BucketKey {
    fn drop(&mut self) {
        self.raw.zeroize();
    }
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Whose content a data key seals: absent user or session ids are empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyScope {
    pub tenant: String,
    pub user: String,
    pub session: String,
}

impl KeyScope {
    /// The bucket of this scope's data key: all of a person's keys share one, so erasing a
    /// person rewraps one bucket; records without a user spread by session.
    pub fn bucket(&self) -> u16 {
        use sha2::Digest;
        let session = if self.user.is_empty() { self.session.as_str() } else { "" };
        let digest = sha2::Sha256::new()
            .chain_update(BUCKET_TAG)
            .chain_update(self.tenant.as_bytes())
            .chain_update([0])
            .chain_update(self.user.as_bytes())
            .chain_update([0])
            .chain_update(session.as_bytes())
            .finalize();
        u16::from_be_bytes([digest[0], digest[1]]) % BUCKETS
    }
}

impl ContentKey {
    pub fn new(mut secret: [u8; 32]) -> Self {
        let cipher = Aes256Gcm::new(&secret.into());
        secret.zeroize();
        Self { cipher, log: None }
    }

    /// This key, as the content key of the log whose verifier key is `verifier`.
    pub fn of_log(self, verifier: String) -> Self {
        Self { log: Some(verifier), ..self }
    }

    /// The verifier of the log key this key derives from, if known.
    pub fn log(&self) -> Option<&str> {
        self.log.as_deref()
    }

    /// `key` sealed for storage as data key `key_id` of `tenant`, as stored before
    /// buckets (tests and migrations only: new keys are wrapped under a [`BucketKey`]).
    pub fn wrap(
        &self,
        tenant: &str,
        key_id: &Uuid,
        key: &DataKey,
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        seal_bytes(&self.cipher, &key_aad(tenant, key_id), &key.0, nonce)
    }

    /// The data key `key_id` of `tenant` from its stored form, wrapped under this key as
    /// data keys were before buckets.
    pub fn unwrap(
        &self,
        tenant: &str,
        key_id: &Uuid,
        wrapped: &[u8],
    ) -> Result<DataKey, SealError> {
        unwrap_key(&self.cipher, &key_aad(tenant, key_id), wrapped).map(DataKey)
    }

    /// `key` sealed for storage as bucket key `key_id` of `bucket`.
    pub fn wrap_bucket_key(
        &self,
        bucket: u16,
        key_id: &Uuid,
        key: &BucketKey,
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        seal_bytes(&self.cipher, &bucket_key_aad(bucket, key_id), &key.raw, nonce)
    }

    /// The bucket key `key_id` of `bucket` from its stored, wrapped form.
    pub fn unwrap_bucket_key(
        &self,
        bucket: u16,
        key_id: &Uuid,
        wrapped: &[u8],
    ) -> Result<BucketKey, SealError> {
        unwrap_key(&self.cipher, &bucket_key_aad(bucket, key_id), wrapped).map(BucketKey::new)
    }
}

impl BucketKey {
    /// A bucket key from 32 random bytes.
    pub fn new(mut random: [u8; 32]) -> Self {
        let key = Self { cipher: Aes256Gcm::new(&random.into()), raw: random };
        random.zeroize();
        key
    }

    /// `key` sealed for storage as data key `key_id` of `tenant`.
    pub fn wrap(
        &self,
        tenant: &str,
        key_id: &Uuid,
        key: &DataKey,
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        seal_bytes(&self.cipher, &key_aad(tenant, key_id), &key.0, nonce)
    }

    /// The data key `key_id` of `tenant` from its stored, wrapped form.
    pub fn unwrap(
        &self,
        tenant: &str,
        key_id: &Uuid,
        wrapped: &[u8],
    ) -> Result<DataKey, SealError> {
        unwrap_key(&self.cipher, &key_aad(tenant, key_id), wrapped).map(DataKey)
    }

    /// The raw key: for tests that look for it in a store's files, nothing else.
    pub fn raw_bytes(&self) -> [u8; 32] {
        self.raw
    }
}

impl DataKey {
    /// A data key from 32 random bytes.
    pub fn new(mut random: [u8; 32]) -> Self {
        let key = Self(random);
        random.zeroize();
        key
    }

    /// The bytes stored for `content` of record `id`. Its keyed hashes are not sealed:
    /// lookups by text index them.
    pub fn seal(&self, id: &Uuid, content: &Content, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let mut plain = Vec::with_capacity(
            32 + content.fields.values().map(|v| v.len() + 5).sum::<usize>() + 3,
        );
        plain.extend_from_slice(&content.salt);
        for name in CONTENT_FIELDS {
            match content.fields.get(name) {
                None => plain.push(0),
                Some(value) => {
                    plain.push(1);
                    let len = u32::try_from(value.len()).expect("content under 4 GiB");
                    plain.extend_from_slice(&len.to_be_bytes());
                    plain.extend_from_slice(value.as_bytes());
                }
            }
        }
        let sealed = seal_bytes(&self.cipher(), &content_aad(id), &plain, nonce);
        plain.zeroize();
        sealed
    }

    /// The content of record `id` from its sealed bytes (with no keyed hashes: they are
    /// stored beside it).
    pub fn open(&self, id: &Uuid, sealed: &[u8]) -> Result<Content, SealError> {
        Ok(ContentParts::of(&self.open_plain(id, sealed)?)?.to_content(KeyedHashes::default()))
    }

    /// The plaintext of record `id`'s sealed content, to read in place ([`ContentParts`]):
    /// what a full verification does with every record, without a copy per field.
    pub fn open_plain(&self, id: &Uuid, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        open_bytes(&self.cipher(), &content_aad(id), sealed)
    }

    /// The raw key: for tests that look for it in a store's files, nothing else.
    pub fn raw_bytes(&self) -> [u8; 32] {
        self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

/// Opened content read in place: the salt, and each field in [`CONTENT_FIELDS`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentParts<'a> {
    pub salt: &'a [u8; 32],
    pub fields: [Option<&'a str>; 3],
}

impl<'a> ContentParts<'a> {
    /// The parts of opened plaintext; an error unless it is exactly one encoded content.
    pub fn of(plain: &'a [u8]) -> Result<Self, SealError> {
        let (salt, mut rest) =
            plain.split_first_chunk::<32>().ok_or(SealError::Malformed("no salt"))?;
        let mut fields = [None; 3];
        for field in &mut fields {
            let (&present, after) = rest.split_first().ok_or(SealError::Malformed("cut short"))?;
            rest = after;
            match present {
                0 => continue,
                1 => {}
                _ => return Err(SealError::Malformed("a field's marker is neither 0 nor 1")),
            }
            let (len, after) =
                rest.split_first_chunk::<4>().ok_or(SealError::Malformed("cut short"))?;
            let len = u32::from_be_bytes(*len) as usize;
            if after.len() < len {
                return Err(SealError::Malformed("cut short"));
            }
            let (value, after) = after.split_at(len);
            *field = Some(
                std::str::from_utf8(value)
                    .map_err(|_| SealError::Malformed("a field is not UTF-8"))?,
            );
            rest = after;
        }
        if !rest.is_empty() {
            return Err(SealError::Malformed("bytes after the last field"));
        }
        Ok(Self { salt, fields })
    }

    /// The content these parts hold, owned, with the keyed hashes stored beside it.
    pub fn to_content(&self, hashes: KeyedHashes) -> Content {
        let fields = CONTENT_FIELDS.into_iter().zip(self.fields);
        let fields = fields.filter_map(|(name, v)| Some((name.to_owned(), v?.to_owned())));
        Content { salt: *self.salt, fields: fields.collect(), hashes }
    }
}

fn content_aad(id: &Uuid) -> Vec<u8> {
    [CONTENT_TAG, id.as_bytes()].concat()
}

fn key_aad(tenant: &str, key_id: &Uuid) -> Vec<u8> {
    [DATA_KEY_TAG, tenant.as_bytes(), &[0], key_id.as_bytes()].concat()
}

fn bucket_key_aad(bucket: u16, key_id: &Uuid) -> Vec<u8> {
    [BUCKET_KEY_TAG, &bucket.to_be_bytes(), key_id.as_bytes()].concat()
}

/// A 32-byte key sealed under `cipher`, opened.
fn unwrap_key(cipher: &Aes256Gcm, aad: &[u8], wrapped: &[u8]) -> Result<[u8; 32], SealError> {
    let mut plain = open_bytes(cipher, aad, wrapped)?;
    let key = <[u8; 32]>::try_from(plain.as_slice())
        .map_err(|_| SealError::Malformed("a wrapped key is 32 bytes"));
    plain.zeroize();
    key
}

fn seal_bytes(cipher: &Aes256Gcm, aad: &[u8], plain: &[u8], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .expect("AES-256-GCM seals any length under 64 GiB");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

fn open_bytes(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let (&version, rest) = sealed.split_first().ok_or(SealError::Malformed("empty"))?;
    if version != VERSION {
        return Err(SealError::Version(version));
    }
    let (nonce, ciphertext) =
        rest.split_first_chunk::<NONCE_LEN>().ok_or(SealError::Malformed("no nonce"))?;
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad })
        .map_err(|_| SealError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn content(fields: &[(&str, &str)]) -> Content {
        let fields = fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Content { salt: [9; 32], fields, hashes: KeyedHashes::default() }
    }

    #[test]
    fn content_opens_only_with_its_key_for_its_record() {
        let key = DataKey::new([1; 32]);
        let id = Uuid::now_v7();
        let c = content(&[("prompt", "the notice period?"), ("prompt_variables", "{}")]);
        let sealed = key.seal(&id, &c, [2; NONCE_LEN]);
        assert!(!sealed.windows(6).any(|w| w == b"notice"), "the text is not in the bytes");
        assert_eq!(key.open(&id, &sealed).unwrap(), c);
        assert_eq!(DataKey::new([3; 32]).open(&id, &sealed), Err(SealError::Unauthentic));
        assert_eq!(key.open(&Uuid::now_v7(), &sealed), Err(SealError::Unauthentic));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&id, &altered), Err(SealError::Unauthentic));
        assert_eq!(key.open(&id, &[2]), Err(SealError::Version(2)));
        assert!(matches!(key.open(&id, &sealed[..10]), Err(SealError::Malformed(_))));
    }

    #[test]
    fn wrapped_keys_unwrap_only_as_themselves() {
        let kek = ContentKey::new([5; 32]);
        let key = DataKey::new([6; 32]);
        let (id, other_id) = (Uuid::now_v7(), Uuid::now_v7());
        let wrapped = kek.wrap("org-1", &id, &key, [8; NONCE_LEN]);
        assert!(!wrapped.windows(32).any(|w| w == [6; 32]), "the raw key is not in the bytes");
        assert_eq!(kek.unwrap("org-1", &id, &wrapped).unwrap().0, key.0);
        assert_eq!(kek.unwrap("org-1", &other_id, &wrapped).unwrap_err(), SealError::Unauthentic);
        assert_eq!(kek.unwrap("org-2", &id, &wrapped).unwrap_err(), SealError::Unauthentic);
        let other = ContentKey::new([4; 32]);
        assert_eq!(other.unwrap("org-1", &id, &wrapped).unwrap_err(), SealError::Unauthentic);
        assert_eq!(format!("{kek:?} {key:?}"), "ContentKey(..) DataKey(..)");
    }

    #[test]
    fn bucket_keys_wrap_data_keys_and_unwrap_only_as_themselves() {
        let root = ContentKey::new([5; 32]);
        let bucket_key = BucketKey::new([9; 32]);
        let (bucket_id, key_id) = (Uuid::now_v7(), Uuid::now_v7());
        let wrapped_bucket = root.wrap_bucket_key(17, &bucket_id, &bucket_key, [1; NONCE_LEN]);
        assert!(!wrapped_bucket.windows(32).any(|w| w == [9; 32]), "no raw bucket key");
        let opened = root.unwrap_bucket_key(17, &bucket_id, &wrapped_bucket).unwrap();
        assert_eq!(opened.raw_bytes(), [9; 32]);
        for (bucket, id) in [(18, bucket_id), (17, key_id)] {
            let other = root.unwrap_bucket_key(bucket, &id, &wrapped_bucket);
            assert_eq!(other.unwrap_err(), SealError::Unauthentic, "bucket {bucket}");
        }
        // A data key wrapped under a bucket key opens under it only, as itself.
        let key = DataKey::new([6; 32]);
        let wrapped = bucket_key.wrap("org-1", &key_id, &key, [2; NONCE_LEN]);
        assert_eq!(opened.unwrap("org-1", &key_id, &wrapped).unwrap().0, key.0);
        assert_eq!(opened.unwrap("org-2", &key_id, &wrapped).unwrap_err(), SealError::Unauthentic);
        let (other, root_unwrap) =
            (BucketKey::new([8; 32]), root.unwrap("org-1", &key_id, &wrapped));
        assert_eq!(other.unwrap("org-1", &key_id, &wrapped).unwrap_err(), SealError::Unauthentic);
        assert_eq!(root_unwrap.unwrap_err(), SealError::Unauthentic, "not under the content key");
        assert_eq!(format!("{opened:?}"), "BucketKey(..)");
    }

    #[test]
    fn a_persons_keys_share_a_bucket_and_buckets_spread() {
        let scope = |tenant: &str, user: &str, session: &str| KeyScope {
            tenant: tenant.into(),
            user: user.into(),
            session: session.into(),
        };
        assert_eq!(scope("t", "u1", "a").bucket(), scope("t", "u1", "b").bucket());
        let spread: std::collections::BTreeSet<u16> =
            (0..2000).map(|i| scope("t", &format!("user-{i}"), "s").bucket()).collect();
        assert!(spread.len() > 1500, "2,000 people in {} buckets", spread.len());
        let sessions: std::collections::BTreeSet<u16> =
            (0..2000).map(|i| scope("t", "", &format!("s-{i}")).bucket()).collect();
        assert!(sessions.len() > 1500, "without a user, sessions spread: {}", sessions.len());
        assert!(spread.iter().chain(&sessions).all(|b| *b < BUCKETS));
        // Fixed by the format: a store's bucket numbers are the same in every version.
        assert_eq!(scope("org-1", "u-42", "s").bucket(), expected_bucket("org-1", "u-42", ""));
    }

    /// The bucket as the module's format says, computed apart from `KeyScope::bucket`.
    fn expected_bucket(tenant: &str, user: &str, session: &str) -> u16 {
        use sha2::Digest;
        let bytes = [
            b"aitrail.key-bucket.v1\0".as_slice(),
            tenant.as_bytes(),
            b"\0",
            user.as_bytes(),
            b"\0",
            session.as_bytes(),
        ]
        .concat();
        let d = sha2::Sha256::digest(&bytes);
        (u16::from(d[0]) * 256 + u16::from(d[1])) % 4096
    }

    proptest! {
        #[test]
        fn any_content_round_trips(
            salt in any::<[u8; 32]>(),
            prompt in proptest::option::of(".*"),
            response in proptest::option::of(".*"),
            variables in proptest::option::of(".*"),
            nonce in any::<[u8; NONCE_LEN]>(),
        ) {
            let mut fields = std::collections::BTreeMap::new();
            for (name, value) in CONTENT_FIELDS.into_iter().zip([prompt, response, variables]) {
                if let Some(v) = value {
                    fields.insert(name.to_owned(), v);
                }
            }
            let c = Content { salt, fields, hashes: KeyedHashes::default() };
            let key = DataKey::new([3; 32]);
            let id = Uuid::now_v7();
            prop_assert_eq!(key.open(&id, &key.seal(&id, &c, nonce)).unwrap(), c);
        }

        #[test]
        fn no_bytes_open_without_the_key(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(DataKey::new([3; 32]).open(&Uuid::nil(), &bytes).is_err());
        }
    }
}
