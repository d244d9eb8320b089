//! The access log (`aitrail.access`): every read, verification and change through the API
//! (written by the server before it answers), and every change the operator makes with the
//! CLI on the store itself, logged alike.

use aitrail_core::TenantId;
use aitrail_core::access::{AccessEvent, Actor, Change};
use aitrail_store::StoreError;

use crate::Trail;

/// What a change concerned, as its access-log event keeps it.
#[derive(Clone, Debug, Default)]
pub struct Changed {
    /// The tenant changed; `None` when across tenants.
    pub tenant: Option<TenantId>,
    /// How many records it touched (an erasure's purged records; else 0).
    pub records: u64,
    /// What else the event keeps (the policy set), as the API's query would.
    pub details: Vec<(String, String)>,
}

impl Trail {
    /// Append one access to the access log; durable when it returns.
    pub async fn record_access(&self, event: &AccessEvent<'_>) -> Result<(), StoreError> {
        self.store.append(vec![event.to_record()]).await.map(drop)
    }

    /// A change the operator made offline (`command`: the CLI's, `aitrail keys create`),
    /// logged as the API logs the same change, then signed into the logs' checkpoints: no
    /// server may be running to sign it.
    pub async fn record_offline(
        &self,
        change: Change,
        command: &str,
        changed: Changed,
    ) -> Result<(), StoreError> {
        let event = AccessEvent {
            actor: Actor::Operator,
            operation: change.operation(),
            route: command,
            tenant: changed.tenant.as_ref(),
            query: &changed.details,
            records: Some(changed.records),
            status: change.status(),
        };
        self.record_access(&event).await?;
        self.sign_pending().await
    }

    /// Sign a checkpoint of every log that grew, as a server does every second: what the
    /// CLI appends to a store no server runs on is provable at once.
    pub async fn sign_pending(&self) -> Result<(), StoreError> {
        let store = self.store.as_ref();
        store.claim_log_key(&self.signer.verifier().to_string()).await?;
        self.signer.sign_pending(store).await.map(drop)
    }
}
