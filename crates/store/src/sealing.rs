//! Content sealed under data keys (crypto-shredding, `aitrail_core::seal`), as both
//! backends store it: the writer's data keys by scope, and opening what a read finds.
//!
//! Data keys live in a key table of their own (SQLite: a separate file; PostgreSQL:
//! `data_keys`), one live key per (tenant, user, session), stored wrapped under the
//! current key of its bucket ([`aitrail_core::seal::BucketKey`]); bucket keys live in a
//! small table of their own, wrapped under the content key. Erasure *retires* the keys of
//! what it erases (no content is sealed under them from then on), names the seqs sealed
//! under them, deletes that content, then *destroys* the keys: deletes them, *rekeys* each
//! bucket they were in (the bucket's other keys rewrapped under a new bucket key), deletes
//! the old bucket keys and compacts the small table, so whatever copies of a destroyed
//! key's wrapped bytes remain in the big table's pages, nothing can unwrap them.
//!
//! A writer caches its data keys (at most [`MAX_KEYS_AT_HAND`]). Each tenant's `logs` row has a `key_epoch`, which
//! retiring bumps (after the keys are marked retired) in a write that waits for every
//! append in progress. A writer reads the epoch as it claims the tenant's seqs and drops
//! the tenant's cached keys when it changed: so content is never sealed under a retired
//! key by an append that commits after the retirement, and every append under it that
//! committed before is seen by the erasure that follows.

use std::collections::HashMap;
use std::sync::Arc;

use aitrail_core::entry::{Content, KeyedHash, KeyedHashes, RowColumns};
use aitrail_core::query::TextField;
use aitrail_core::seal::{
    BucketKey, ContentKey, ContentParts, DataKey, KeyScope, NONCE_LEN, SealError,
};
use uuid::Uuid;

use crate::append::Placed;
use crate::{ContentRef, RowContentRef, StoreError};

/// A record's content as read: what verification tells apart.
#[derive(Debug, Clone, PartialEq)]
pub enum RowContent {
    /// Kept, and opened.
    Kept(Content),
    /// None: the record never had content, it was purged, or its data key was destroyed.
    Gone,
    /// Sealed, but the store was opened without the content key: not read.
    Sealed,
    /// Sealed bytes that do not open under their key: altered, or moved from another record.
    Unreadable(String),
}

impl RowContent {
    /// The content to show: kept or none; sealed bytes that do not open are corrupt.
    pub fn into_kept(self, id: &str) -> Result<Option<Content>, StoreError> {
        match self {
            RowContent::Kept(c) => Ok(Some(c)),
            RowContent::Gone | RowContent::Sealed => Ok(None),
            RowContent::Unreadable(why) => {
                Err(StoreError::Corrupt(format!("record {id}: its content {why}")))
            }
        }
    }

    pub fn kept(&self) -> Option<&Content> {
        match self {
            RowContent::Kept(c) => Some(c),
            _ => None,
        }
    }
}

/// The content columns of a row as read: sealed bytes, their key's id, the key as the key
/// table holds it (`None` once destroyed), its bucket key, and the keyed hashes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SealedColumns<'a> {
    /// `None`: no content row.
    pub sealed: Option<&'a [u8]>,
    pub key_id: Option<&'a [u8]>,
    pub wrapped: Option<&'a [u8]>,
    pub bucket_key: BucketColumns<'a>,
    pub hashes: [Option<&'a [u8]>; 2],
}

/// A data key's bucket key as read beside it: its id (`None`: the data key is wrapped
/// under the content key, as before buckets), and the bucket key's row (`None` if gone).
#[derive(Debug, Clone, Copy, Default)]
pub struct BucketColumns<'a> {
    pub id: Option<&'a [u8]>,
    pub bucket: Option<i64>,
    pub wrapped: Option<&'a [u8]>,
}

/// A bucket key as its table holds it.
#[derive(Debug, Clone, Copy)]
pub struct StoredBucketKey<'a> {
    pub id: Uuid,
    pub bucket: u16,
    pub wrapped: &'a [u8],
}

impl StoredBucketKey<'_> {
    /// The bucket key, unwrapped under the content key.
    pub fn open(&self, content_key: &ContentKey) -> Result<BucketKey, StoreError> {
        content_key.unwrap_bucket_key(self.bucket, &self.id, self.wrapped).map_err(|e| {
            StoreError::Corrupt(format!("bucket key {} does not unwrap: {e}", self.id))
        })
    }
}

/// A new bucket key, as the bucket-key table takes it (the bucket's current key).
#[derive(Debug)]
pub struct NewBucketKey {
    pub id: Uuid,
    pub bucket: u16,
    pub wrapped: Vec<u8>,
}

/// A new key for `bucket`: its stored form, and the key.
pub fn new_bucket_key(
    content_key: &ContentKey,
    bucket: u16,
) -> Result<(NewBucketKey, BucketKey), StoreError> {
    let key = BucketKey::new(random()?);
    let id = Uuid::now_v7();
    let wrapped = content_key.wrap_bucket_key(bucket, &id, &key, random()?);
    Ok((NewBucketKey { id, bucket, wrapped }, key))
}

/// A data key of a bucket being rekeyed: its id, tenant and wrapped form.
#[derive(Debug)]
pub struct KeyToRewrap {
    pub id: Uuid,
    pub tenant: String,
    pub wrapped: Vec<u8>,
}

/// What a stored data key is wrapped under.
#[derive(Clone, Copy, Debug)]
pub enum Wrapping<'a> {
    /// The content key itself, as before buckets.
    Content(&'a ContentKey),
    Bucket(&'a BucketKey),
}

/// `keys`, wrapped under `old`, wrapped again under `new`: (id, new wrapped form).
pub fn rewrap(
    old: Wrapping<'_>,
    new: &BucketKey,
    keys: &[KeyToRewrap],
) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
    keys.iter()
        .map(|k| {
            let key = match old {
                Wrapping::Content(content_key) => content_key.unwrap(&k.tenant, &k.id, &k.wrapped),
                Wrapping::Bucket(bucket_key) => bucket_key.unwrap(&k.tenant, &k.id, &k.wrapped),
            };
            let key = key.map_err(|e| {
                StoreError::Corrupt(format!(
                    "data key {} of tenant {} does not unwrap: {e}",
                    k.id, k.tenant
                ))
            })?;
            Ok((k.id, new.wrap(&k.tenant, &k.id, &key, random()?)))
        })
        .collect()
}

/// The bucket number a table holds, checked.
pub fn bucket_number(bucket: i64) -> Result<u16, StoreError> {
    u16::try_from(bucket)
        .ok()
        .filter(|b| *b < aitrail_core::seal::BUCKETS)
        .ok_or_else(|| StoreError::Corrupt(format!("bucket {bucket} is out of range")))
}

fn does_not_unwrap(e: SealError) -> String {
    format!("does not unwrap: {e}")
}

/// Data keys an [`Opener`] keeps unwrapped; it forgets them all when one more comes.
const OPENER_KEYS: usize = 256;

/// Opens the content a read finds, unwrapping each data key once while it keeps it.
pub struct Opener<'k> {
    content_key: Option<&'k ContentKey>,
    /// By key id: the tenant it was unwrapped for (the wrapping binds it), and the key.
    keys: HashMap<Uuid, (String, Result<DataKey, String>)>,
    /// By bucket key id: the bucket (the wrapping binds it), and the key.
    buckets: HashMap<Uuid, (u16, Result<BucketKey, SealError>)>,
}

impl<'k> Opener<'k> {
    pub fn new(content_key: Option<&'k ContentKey>) -> Self {
        Self { content_key, keys: HashMap::new(), buckets: HashMap::new() }
    }

    /// Data key `key_id` of `tenant` from its wrapped form and its bucket key's columns.
    fn unwrap(
        &mut self,
        content_key: &ContentKey,
        tenant: &str,
        key_id: &Uuid,
        wrapped: &[u8],
        bucket_key: BucketColumns<'_>,
    ) -> Result<DataKey, String> {
        let Some(id) = bucket_key.id else {
            // Wrapped before buckets: under the content key itself.
            return content_key.unwrap(tenant, key_id, wrapped).map_err(does_not_unwrap);
        };
        let id = Uuid::from_slice(id).map_err(|_| "names no bucket key".to_owned())?;
        let (Some(bucket), Some(bucket_wrapped)) = (bucket_key.bucket, bucket_key.wrapped) else {
            return Err(format!("is wrapped under bucket key {id}, which is missing"));
        };
        let bucket = bucket_number(bucket).map_err(|e| e.to_string())?;
        if self.buckets.get(&id).is_none_or(|(b, _)| *b != bucket) {
            if self.buckets.len() >= OPENER_KEYS {
                self.buckets.clear();
            }
            let key = content_key.unwrap_bucket_key(bucket, &id, bucket_wrapped);
            self.buckets.insert(id, (bucket, key));
        }
        match &self.buckets[&id].1 {
            Ok(bucket_key) => bucket_key.unwrap(tenant, key_id, wrapped).map_err(does_not_unwrap),
            Err(e) => Err(format!("is wrapped under bucket key {id}, which does not unwrap: {e}")),
        }
    }

    /// The content of record `id` of `tenant` from its columns.
    pub fn open(&mut self, tenant: &str, id: &str, columns: SealedColumns<'_>) -> RowContent {
        let plain = match self.open_plain(tenant, id, columns) {
            Plain::Kept(plain) => plain,
            Plain::Gone => return RowContent::Gone,
            Plain::Sealed => return RowContent::Sealed,
            Plain::Unreadable(why) => return RowContent::Unreadable(why),
        };
        let [prompt, response] =
            columns.hashes.map(|h| h.and_then(|h| <[u8; 32]>::try_from(h).ok()).map(KeyedHash));
        match ContentParts::of(&plain) {
            Ok(parts) => RowContent::Kept(parts.to_content(KeyedHashes { prompt, response })),
            Err(e) => RowContent::Unreadable(format!("does not open: {e}")),
        }
    }

    /// The plaintext of record `id`'s content, to read in place ([`Plain::borrow`]).
    pub fn open_plain(&mut self, tenant: &str, id: &str, columns: SealedColumns<'_>) -> Plain {
        let Some(sealed) = columns.sealed else { return Plain::Gone };
        // A destroyed key shows without the content key: the content is gone.
        let Some(wrapped) = columns.wrapped else { return Plain::Gone };
        let Some(content_key) = self.content_key else { return Plain::Sealed };
        let Some(key_id) = columns.key_id.and_then(|k| Uuid::from_slice(k).ok()) else {
            return Plain::Unreadable("names no data key".into());
        };
        let Ok(record) = Uuid::parse_str(id) else {
            return Plain::Unreadable("belongs to a record whose id is not a UUID".into());
        };
        // A few keys at hand: rows of one session come in runs; most others repeat none.
        if self.keys.get(&key_id).is_none_or(|(t, _)| t != tenant) {
            if self.keys.len() >= OPENER_KEYS {
                self.keys.clear();
            }
            let key = self.unwrap(content_key, tenant, &key_id, wrapped, columns.bucket_key);
            self.keys.insert(key_id, (tenant.to_owned(), key));
        }
        let key = match &self.keys[&key_id].1 {
            Ok(key) => key,
            Err(why) => return Plain::Unreadable(format!("has a data key that {why}")),
        };
        match key.open_plain(&record, sealed) {
            Ok(plain) => Plain::Kept(plain),
            Err(e) => Plain::Unreadable(format!("does not open: {e}")),
        }
    }
}

/// A row's content opened to be read in place: its plaintext, or why there is none.
#[derive(Debug)]
pub enum Plain {
    Kept(Vec<u8>),
    Gone,
    Sealed,
    Unreadable(String),
}

impl Plain {
    /// The content borrowed for a check, read in place.
    pub fn borrow(&self) -> RowContentRef<'_> {
        match self {
            Plain::Kept(plain) => match ContentParts::of(plain) {
                Ok(parts) => RowContentRef::Kept(ContentRef {
                    salt: parts.salt,
                    fields: parts.fields.map(|f| f.map(str::as_bytes)),
                }),
                Err(_) => RowContentRef::Unreadable("does not open: sealed content is malformed"),
            },
            Plain::Gone => RowContentRef::Gone,
            Plain::Sealed => RowContentRef::Sealed,
            Plain::Unreadable(why) => RowContentRef::Unreadable(why),
        }
    }
}

/// A record's content as a writer stores it.
#[derive(Debug)]
pub struct SealedContent {
    pub key_id: Uuid,
    pub sealed: Vec<u8>,
    pub hashes: KeyedHashes,
}

/// A new data key, as the key table takes it.
#[derive(Debug)]
pub struct NewKey {
    pub scope: KeyScope,
    pub id: Uuid,
    pub wrapped: Vec<u8>,
    /// The bucket key it is wrapped under (`None`: under the content key).
    pub bucket_key: Option<Uuid>,
}

/// Data keys a writer keeps at hand at most. Every (tenant, user, session) has a key of
/// its own, so a writer that sees new sessions all day would otherwise keep every key it
/// ever used (the soak benchmark saw ~165 MiB in 10 minutes at 2,000 new sessions a second):
/// past this, it starts afresh and looks up again the keys it needs.
pub const MAX_KEYS_AT_HAND: usize = 65_536;

/// The data keys a writer seals with, by scope; a tenant's are valid while its key epoch
/// is the one they were found at.
#[derive(Debug)]
pub struct WriterKeys {
    content_key: Arc<ContentKey>,
    epochs: HashMap<String, i64>,
    keys: HashMap<KeyScope, (Uuid, DataKey)>,
}

impl WriterKeys {
    pub fn new(content_key: Arc<ContentKey>) -> Self {
        Self { content_key, epochs: HashMap::new(), keys: HashMap::new() }
    }

    /// The tenant's key epoch as this transaction read it: its cached keys go if it moved.
    pub fn at_epoch(&mut self, tenant: &str, epoch: i64) {
        // Called as a transaction starts, before it looks for any key: a safe point to
        // bound the cache (the keys it needs are looked up again).
        if self.keys.len() >= MAX_KEYS_AT_HAND {
            self.keys.clear();
        }
        if self.epochs.insert(tenant.to_owned(), epoch) != Some(epoch) {
            self.keys.retain(|scope, _| scope.tenant != tenant);
        }
    }

    /// Forget every key (a transaction that found them failed).
    pub fn forget(&mut self) {
        self.epochs.clear();
        self.keys.clear();
    }

    /// Whose key seals each row's content (`None`: the row has none).
    pub fn scopes(rows: &[Placed<'_>]) -> Vec<Option<KeyScope>> {
        rows.iter().map(|r| r.content.map(|_| scope_of(&r.columns))).collect()
    }

    /// Those of `scopes` whose key is not at hand, each once.
    pub fn missing(&self, scopes: &[Option<KeyScope>]) -> Vec<KeyScope> {
        let mut missing: Vec<KeyScope> =
            scopes.iter().flatten().filter(|s| !self.keys.contains_key(s)).cloned().collect();
        missing.sort();
        missing.dedup();
        missing
    }

    /// The content key the bucket keys are wrapped under.
    pub fn content_key(&self) -> &ContentKey {
        &self.content_key
    }

    /// The live key the key table holds for `scope`, wrapped as stored: under `bucket_key`,
    /// or (`None`) under the content key.
    pub fn found(
        &mut self,
        scope: KeyScope,
        id: Uuid,
        wrapped: &[u8],
        bucket_key: Option<&BucketKey>,
    ) -> Result<(), StoreError> {
        let key = match bucket_key {
            Some(bucket_key) => bucket_key.unwrap(&scope.tenant, &id, wrapped),
            None => self.content_key.unwrap(&scope.tenant, &id, wrapped),
        };
        let key = key.map_err(|e| {
            StoreError::Corrupt(format!(
                "data key {id} of tenant {} does not unwrap: {e}",
                scope.tenant
            ))
        })?;
        self.keys.insert(scope, (id, key));
        Ok(())
    }

    /// A new data key for `scope`, wrapped under its bucket's current key (`(id, key)`; or,
    /// `None`, under the content key), to be committed to the key table before anything is
    /// sealed under it; at hand once [`WriterKeys::found`] or [`WriterKeys::added`].
    pub fn create(
        &self,
        scope: KeyScope,
        bucket_key: Option<(Uuid, &BucketKey)>,
    ) -> Result<(NewKey, DataKey), StoreError> {
        let key = DataKey::new(random()?);
        let id = Uuid::now_v7();
        let wrapped = match bucket_key {
            Some((_, bucket_key)) => bucket_key.wrap(&scope.tenant, &id, &key, random()?),
            None => self.content_key.wrap(&scope.tenant, &id, &key, random()?),
        };
        Ok((NewKey { scope, id, wrapped, bucket_key: bucket_key.map(|(id, _)| id) }, key))
    }

    /// A key [`WriterKeys::create`] made, now committed.
    pub fn added(&mut self, new: NewKey, key: DataKey) {
        self.keys.insert(new.scope, (new.id, key));
    }

    /// Whether the key of `scope` is at hand.
    pub fn has(&self, scope: &KeyScope) -> bool {
        self.keys.contains_key(scope)
    }

    /// Each row's content sealed under the key of its scope ([`WriterKeys::scopes`]),
    /// which must be at hand. The nonces come from one read of the system's randomness.
    pub fn seal_rows(
        &self,
        rows: &[Placed<'_>],
        scopes: &[Option<KeyScope>],
    ) -> Result<Vec<Option<SealedContent>>, StoreError> {
        let mut nonces = vec![0u8; NONCE_LEN * rows.len()];
        getrandom::fill(&mut nonces).map_err(|e| {
            StoreError::Backend(format!("no randomness for the nonces of sealed content: {e}"))
        })?;
        let nonces = nonces.chunks_exact(NONCE_LEN).map(|n| n.try_into().expect("a nonce"));
        rows.iter()
            .zip(scopes)
            .zip(nonces)
            .map(|((row, scope), nonce)| match (row.content, scope) {
                (Some(content), Some(scope)) => {
                    self.seal_with(scope, &row.id, content, nonce).map(Some)
                }
                _ => Ok(None),
            })
            .collect()
    }

    /// `content` of record `id` sealed under the key of `scope` (which must be at hand).
    pub fn seal_content(
        &self,
        scope: &KeyScope,
        id: &Uuid,
        content: &Content,
    ) -> Result<SealedContent, StoreError> {
        self.seal_with(scope, id, content, random()?)
    }

    fn seal_with(
        &self,
        scope: &KeyScope,
        id: &Uuid,
        content: &Content,
        nonce: [u8; NONCE_LEN],
    ) -> Result<SealedContent, StoreError> {
        let (key_id, key) = self.keys.get(scope).ok_or_else(|| {
            StoreError::Backend(format!("no data key at hand for tenant {}", scope.tenant))
        })?;
        let sealed = key.seal(id, content, nonce);
        Ok(SealedContent { key_id: *key_id, sealed, hashes: content.hashes })
    }
}

/// Whose data key seals a row's content.
pub fn scope_of(columns: &RowColumns) -> KeyScope {
    let text = |field: TextField| {
        let at = TextField::ALL.iter().position(|f| *f == field).expect("a text field");
        columns.fields.text[at].clone().unwrap_or_default()
    };
    KeyScope {
        tenant: columns.fields.tenant_id.clone(),
        user: text(TextField::UserId),
        session: text(TextField::SessionId),
    }
}

fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Backend(format!("no randomness for a data key or nonce: {e}")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_at_hand_are_bounded() {
        let mut keys = WriterKeys::new(Arc::new(ContentKey::new([7; 32])));
        for i in 0..MAX_KEYS_AT_HAND + 10 {
            keys.at_epoch("t", 0);
            let scope = KeyScope { tenant: "t".into(), user: format!("u{i}"), session: "s".into() };
            let (new, key) = keys.create(scope.clone(), None).expect("randomness");
            keys.added(new, key);
            assert!(keys.has(&scope), "a key added is at hand until the next transaction");
        }
        assert!(keys.keys.len() <= MAX_KEYS_AT_HAND);
        keys.at_epoch("t", 0);
        assert!(keys.keys.len() < MAX_KEYS_AT_HAND);
    }
}
