//! API keys: issued, listed and revoked the same way for the server's admin API, its
//! first start, and `aitrail keys` on a store directly.

use aitrail_core::access::{ApiKey, KeyId, Role};
use aitrail_core::ingest::FieldError;
use aitrail_core::secrets;
use aitrail_core::{TenantId, Timestamp};
use aitrail_store::{Store, StoreError, StoredKey};

use crate::Trail;

impl Trail {
    /// Make a key, keep its digest, and return it whole: the only time its secret is seen.
    pub async fn issue_key(&self, request: KeyRequest) -> Result<(ApiKey, StoredKey), KeyError> {
        issue(self.store.as_ref(), &self.signer.api_key_secret(), request).await
    }

    /// Every key, oldest first; never a secret.
    pub async fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.store.keys().await
    }

    pub async fn key(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        self.store.key(id).await
    }

    /// Revoke a key from now on; false when there is no such key. Revoking again keeps the
    /// first time.
    pub async fn revoke_key(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.store.revoke_key(id, Timestamp::now()).await
    }
}

/// What a new key may do and for how long.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub role: Role,
    /// `None`: a global admin key (only with [`Role::Admin`]).
    pub tenant: Option<TenantId>,
    pub expires_at: Option<Timestamp>,
    pub label: Option<String>,
}

/// A key as the admin API shows it (and `aitrail keys` reads it): never its secret nor its
/// digest, but the whole key once, in the answer that made it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub role: String,
    pub tenant_id: Option<String>,
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<&StoredKey> for KeyInfo {
    fn from(k: &StoredKey) -> Self {
        Self {
            id: k.id.to_string(),
            role: k.role.to_string(),
            tenant_id: k.tenant.as_ref().map(ToString::to_string),
            label: k.label.clone(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            key: None,
        }
    }
}

/// Why no key was made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The request asks for a key that may not be made, for the reason given (the field
    /// named).
    #[error("{}: {}", .0.field, .0.message)]
    Refused(FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Make a key, keep its digest, and return it whole: the only time its secret is seen.
pub async fn issue(
    store: &dyn Store,
    secret: &[u8],
    request: KeyRequest,
) -> Result<(ApiKey, StoredKey), KeyError> {
    if request.tenant.is_none() && request.role != Role::Admin {
        return Err(KeyError::Refused(FieldError::new(
            "tenant_id",
            format!(
                "a {} key needs a tenant; only admin keys may act across tenants",
                request.role
            ),
        )));
    }
    // A label is shown to admins and beside the access log: never a credential.
    if let Some(rule) = request.label.as_deref().and_then(secrets::find_in_text) {
        return Err(KeyError::Refused(FieldError::new(
            "label",
            format!("holds a credential ({rule}); describe the key instead"),
        )));
    }
    let mut random = [0u8; 40];
    getrandom::fill(&mut random)
        .map_err(|e| StoreError::Backend(format!("no randomness for a key: {e}")))?;
    let key = ApiKey::generate(random);
    let stored = StoredKey {
        id: key.id().clone(),
        role: request.role,
        tenant: request.tenant,
        digest: key.digest(secret),
        label: request.label,
        created_at: Timestamp::now(),
        expires_at: request.expires_at,
        revoked_at: None,
    };
    store.add_key(&stored).await?;
    Ok((key, stored))
}
