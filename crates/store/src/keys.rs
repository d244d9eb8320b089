//! Issuing API keys, the same way for the server's admin API, its first start, and
//! `aitrail keys create` on a store directly.

use aitrail_core::access::{ApiKey, Role};
use aitrail_core::{TenantId, Timestamp};

use crate::{Store, StoreError, StoredKey};

/// What a new key may do and for how long.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub role: Role,
    /// `None`: a global admin key (only with [`Role::Admin`]).
    pub tenant: Option<TenantId>,
    pub expires_at: Option<Timestamp>,
    pub label: Option<String>,
}

/// Make a key, keep its digest, and return it whole: the only time its secret is seen.
pub async fn issue(
    store: &dyn Store,
    secret: &[u8],
    request: KeyRequest,
) -> Result<(ApiKey, StoredKey), StoreError> {
    if request.tenant.is_none() && request.role != Role::Admin {
        return Err(StoreError::Refused(format!(
            "a {} key needs a tenant; only admin keys may act across tenants",
            request.role
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
