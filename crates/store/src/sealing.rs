//! Content sealed under data keys (crypto-shredding, `aitrail_core::seal`), as both
//! backends store it: the writer's data keys by scope, and opening what a read finds.
//!
//! Data keys live in a key table of their own (SQLite: a separate file; PostgreSQL:
//! `data_keys`), one live key per (tenant, user, session), stored wrapped under the
//! content key. Erasure *retires* the keys of what it erases (no content is sealed under
//! them from then on), names the seqs sealed under them, deletes that content, then
//! *destroys* the keys and compacts the key table, so no copy of them remains.
//!
//! A writer caches its data keys. Each tenant's `logs` row has a `key_epoch`, which
//! retiring bumps (after the keys are marked retired) in a write that waits for every
//! append in progress. A writer reads the epoch as it claims the tenant's seqs and drops
//! the tenant's cached keys when it changed: so content is never sealed under a retired
//! key by an append that commits after the retirement, and every append under it that
//! committed before is seen by the erasure that follows.

use std::collections::HashMap;
use std::sync::Arc;

use aitrail_core::entry::{Content, KeyedHash, KeyedHashes, RowColumns};
use aitrail_core::query::TextField;
use aitrail_core::seal::{ContentKey, DataKey, KeyScope, SealError};
use uuid::Uuid;

use crate::StoreError;
use crate::append::Placed;

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
/// table holds it (`None` once destroyed), and the keyed hashes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SealedColumns<'a> {
    /// `None`: no content row.
    pub sealed: Option<&'a [u8]>,
    pub key_id: Option<&'a [u8]>,
    pub wrapped: Option<&'a [u8]>,
    pub hashes: [Option<&'a [u8]>; 2],
}

/// Opens the content a read finds, unwrapping each data key once.
pub struct Opener<'k> {
    content_key: Option<&'k ContentKey>,
    keys: HashMap<Uuid, Result<DataKey, SealError>>,
}

impl<'k> Opener<'k> {
    pub fn new(content_key: Option<&'k ContentKey>) -> Self {
        Self { content_key, keys: HashMap::new() }
    }

    /// The content of record `id` of `tenant` from its columns.
    pub fn open(&mut self, tenant: &str, id: &str, columns: SealedColumns<'_>) -> RowContent {
        let Some(sealed) = columns.sealed else { return RowContent::Gone };
        let Some(content_key) = self.content_key else { return RowContent::Sealed };
        let Some(wrapped) = columns.wrapped else { return RowContent::Gone };
        let Some(key_id) = columns.key_id.and_then(|k| Uuid::from_slice(k).ok()) else {
            return RowContent::Unreadable("names no data key".into());
        };
        let Ok(record) = Uuid::parse_str(id) else {
            return RowContent::Unreadable("belongs to a record whose id is not a UUID".into());
        };
        let key =
            self.keys.entry(key_id).or_insert_with(|| content_key.unwrap(tenant, &key_id, wrapped));
        let key = match key {
            Ok(key) => key,
            Err(e) => {
                return RowContent::Unreadable(format!("has a data key that does not unwrap: {e}"));
            }
        };
        match key.open(&record, sealed) {
            Ok(mut content) => {
                let [prompt, response] = columns
                    .hashes
                    .map(|h| h.and_then(|h| <[u8; 32]>::try_from(h).ok()).map(KeyedHash));
                content.hashes = KeyedHashes { prompt, response };
                RowContent::Kept(content)
            }
            Err(e) => RowContent::Unreadable(format!("does not open: {e}")),
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
}

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
        if self.epochs.insert(tenant.to_owned(), epoch) != Some(epoch) {
            self.keys.retain(|scope, _| scope.tenant != tenant);
        }
    }

    /// Forget every key (a transaction that found them failed).
    pub fn forget(&mut self) {
        self.epochs.clear();
        self.keys.clear();
    }

    /// The scopes of `rows` with content whose key is not at hand, each once.
    pub fn missing(&self, rows: &[Placed<'_>]) -> Vec<KeyScope> {
        let mut missing: Vec<KeyScope> = rows
            .iter()
            .filter(|r| r.content.is_some())
            .map(|r| scope_of(&r.columns))
            .filter(|s| !self.keys.contains_key(s))
            .collect();
        missing.sort();
        missing.dedup();
        missing
    }

    /// The live key the key table holds for `scope`, wrapped as stored.
    pub fn found(&mut self, scope: KeyScope, id: Uuid, wrapped: &[u8]) -> Result<(), StoreError> {
        let key = self.content_key.unwrap(&scope.tenant, &id, wrapped).map_err(|e| {
            StoreError::Corrupt(format!(
                "data key {id} of tenant {} does not unwrap: {e}",
                scope.tenant
            ))
        })?;
        self.keys.insert(scope, (id, key));
        Ok(())
    }

    /// A new data key for `scope`, to be committed to the key table before anything is
    /// sealed under it; at hand once [`WriterKeys::found`] or [`WriterKeys::added`].
    pub fn create(&self, scope: KeyScope) -> Result<(NewKey, DataKey), StoreError> {
        let key = DataKey::new(random()?);
        let id = Uuid::now_v7();
        let wrapped = self.content_key.wrap(&scope.tenant, &id, &key, random()?);
        Ok((NewKey { scope, id, wrapped }, key))
    }

    /// A key [`WriterKeys::create`] made, now committed.
    pub fn added(&mut self, new: NewKey, key: DataKey) {
        self.keys.insert(new.scope, (new.id, key));
    }

    /// Whether the key of `scope` is at hand.
    pub fn has(&self, scope: &KeyScope) -> bool {
        self.keys.contains_key(scope)
    }

    /// The row's content sealed under its scope's key (which must be at hand).
    pub fn seal(&self, row: &Placed<'_>) -> Result<Option<SealedContent>, StoreError> {
        let Some(content) = row.content else { return Ok(None) };
        let id =
            Uuid::parse_str(&row.columns.id).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.seal_content(&scope_of(&row.columns), &id, content).map(Some)
    }

    /// `content` of record `id` sealed under the key of `scope` (which must be at hand).
    pub fn seal_content(
        &self,
        scope: &KeyScope,
        id: &Uuid,
        content: &Content,
    ) -> Result<SealedContent, StoreError> {
        let (key_id, key) = self.keys.get(scope).ok_or_else(|| {
            StoreError::Backend(format!("no data key at hand for tenant {}", scope.tenant))
        })?;
        let sealed = key.seal(id, content, random()?);
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
