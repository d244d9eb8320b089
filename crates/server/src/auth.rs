//! Authentication: every route but /healthz takes `Authorization: Bearer ait_…`, or the
//! dashboard's session cookie (crate::session) made from such a key. The key is looked up by its public id and its secret checked against the stored HMAC in
//! constant time. Lookups are cached for a second, so a key revoked on another node stops
//! working within a second (on this node, at once) — or, while this node cannot read the
//! store, within a minute (STALE_FOR).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aitrail_core::Timestamp;
use aitrail_core::access::{Action, ApiKey, Denied, KeyId, Principal};
use aitrail_core::session::{Session, SessionRefusal};
use aitrail_core::{StoredRecord, TenantId};
use aitrail_store::{Store, StoredKey};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::{ApiError, AppState};

/// How long a key read before stands while the store cannot be read.
const STALE_FOR: Duration = Duration::from_secs(60);

/// How long a looked-up key is trusted before it is read again.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The server's keys: the secret their digests are made with, a short cache, and each
/// key's request budget.
pub struct KeyRing {
    secret: [u8; 32],
    cache: Mutex<HashMap<KeyId, (Instant, Option<StoredKey>)>>,
    /// Requests a second each key may make on this node (0: no limit), and its buckets.
    rate: f64,
    buckets: Mutex<HashMap<KeyId, Bucket>>,
}

/// A token bucket: `tokens` left as of `at`, refilled at the key's rate up to one
/// second's worth.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing(<secret>)")
    }
}

impl KeyRing {
    /// `rate`: requests a second each key may make on this node; 0 for no limit.
    pub fn new(secret: [u8; 32], rate: u32) -> Self {
        Self {
            secret,
            cache: Mutex::new(HashMap::new()),
            rate: f64::from(rate),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request from the key's budget, or say when to retry.
    fn spend(&self, id: &KeyId) -> Result<(), ApiError> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(id.clone()).or_insert(Bucket { tokens: self.rate, at: now });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64;
        Err(ApiError::TooManyRequests { retry_after: wait })
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Forget what is cached of a key (after revoking it here).
    pub(crate) fn forget(&self, id: &KeyId) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    async fn lookup(&self, store: &dyn Store, id: &KeyId) -> Result<Option<StoredKey>, ApiError> {
        let now = Instant::now();
        if let Some((at, key)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(id)
            && now.duration_since(*at) < CACHE_FOR
        {
            return Ok(key.clone());
        }
        let key = match store.key(id).await {
            Ok(key) => key,
            // The store cannot be read: the key as last read stands for up to STALE_FOR (a
            // revocation made meanwhile on another node is then seen that much later).
            Err(e) => match self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
                Some((at, key)) if at.elapsed() < STALE_FOR => {
                    tracing::warn!(error = %e, "the store cannot be read; using the key as last read");
                    return Ok(key.clone());
                }
                _ => return Err(e.into()),
            },
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.clear(); // made-up ids must not grow it without bound
        }
        cache.insert(id.clone(), (now, key.clone()));
        Ok(key)
    }

    /// Who presents `header` (an `Authorization` value), or why nobody.
    pub(crate) async fn authenticate(
        &self,
        store: &dyn Store,
        header: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let header = header.ok_or(ApiError::Unauthorized(
            "no Authorization: Bearer key (or dashboard session cookie)",
        ))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(ApiError::Unauthorized("Authorization is not a Bearer key"))?;
        self.authenticate_key(store, token.trim()).await
    }

    /// Who holds the API key `token` (`ait_…`), or why nobody.
    pub(crate) async fn authenticate_key(
        &self,
        store: &dyn Store,
        token: &str,
    ) -> Result<Principal, ApiError> {
        let key = ApiKey::parse(token).ok_or(ApiError::Unauthorized("malformed API key"))?;
        // An unknown id and a wrong secret answer alike: no oracle for which ids exist.
        let stored = self.lookup(store, key.id()).await?;
        let stored = stored
            .filter(|s| key.matches(&self.secret, &s.digest))
            .ok_or(ApiError::Unauthorized("invalid API key"))?;
        self.admit(stored)
    }

    /// The dashboard session `token` stands for, and who it is for; its key must still be
    /// live (revoking a key ends its sessions).
    pub(crate) async fn authenticate_session(
        &self,
        store: &dyn Store,
        token: &str,
    ) -> Result<(Principal, Session), ApiError> {
        let now = Timestamp::now().unix_nanos() / 1_000_000_000;
        let session = Session::open(&self.secret, token, now).map_err(|r| match r {
            SessionRefusal::Invalid => ApiError::Unauthorized("invalid session: sign in again"),
            SessionRefusal::Expired => {
                ApiError::Unauthorized("the session has expired: sign in again")
            }
        })?;
        let stored = self
            .lookup(store, &session.key_id)
            .await?
            .ok_or(ApiError::Unauthorized("invalid session: sign in again"))?;
        Ok((self.admit(stored)?, session))
    }

    /// A key found and matched: refused if revoked or expired, else charged one request.
    fn admit(&self, stored: StoredKey) -> Result<Principal, ApiError> {
        if stored.revoked_at.is_some() {
            return Err(ApiError::Unauthorized("this API key was revoked"));
        }
        if !stored.is_live(Timestamp::now()) {
            return Err(ApiError::Unauthorized("this API key has expired"));
        }
        self.spend(&stored.id)?;
        Ok(Principal { key_id: stored.id, role: stored.role, tenant: stored.tenant })
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let principal = match (
            header,
            crate::session::cookie(&parts.headers, crate::session::secure(app, &parts.headers)),
        ) {
            (None, Some(_)) => crate::session::SignedIn::from_request_parts(parts, app).await?.0,
            _ => app.keys.authenticate(app.store.as_ref(), header).await?,
        };
        if let Some(seen) = parts.extensions.get::<crate::seen::Seen>() {
            seen.set(&principal);
        }
        Ok(Caller(principal))
    }
}

impl Caller {
    /// May this caller do `action` in `tenant`? Hidden tenants answer 404.
    pub(crate) fn may(&self, action: Action, tenant: Option<&TenantId>) -> Result<(), ApiError> {
        self.0.may(action, tenant).map_err(|d| match d {
            Denied::Forbidden(why) => ApiError::Forbidden(why),
            Denied::Hidden => ApiError::NotFound,
        })
    }

    /// The tenant a request is about: the one named, which the caller must be allowed
    /// to `action` in, or else the caller's own.
    pub(crate) fn tenant_for(
        &self,
        action: Action,
        named: Option<TenantId>,
    ) -> Result<Option<TenantId>, ApiError> {
        self.may(action, named.as_ref())?;
        Ok(named.or_else(|| self.0.tenant.clone()))
    }

    /// Whether content (prompt, response, prompt variables) may be shown to this caller.
    pub(crate) fn sees_content(&self, tenant: &TenantId) -> bool {
        self.0.may(Action::ReadContent, Some(tenant)).is_ok()
    }

    /// The record as this caller may see it: without content unless allowed.
    pub(crate) fn redact(&self, mut r: StoredRecord) -> StoredRecord {
        if !self.sees_content(&r.record.tenant_id) {
            r.record.prompt = None;
            r.record.response = None;
            r.record.prompt_variables = None;
            r.record.prompt_hash = None;
            r.record.response_hash = None;
        }
        r
    }
}
