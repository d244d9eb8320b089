//! A full verification run recorded in the system log (the API's and the dashboard's
//! "verify now"), so the last result and its time are tamper-evident and the same on every
//! node. `aitrail verify` on a store runs the same check (`store::verify`) and, being a
//! read, records nothing.

use std::collections::BTreeMap;

use aitrail_core::access::Actor;
use aitrail_core::policy::system_event;
use aitrail_core::{Query, TenantId, Timestamp};
use aitrail_store::StoreError;
use aitrail_store::verify::{Finding, verify_store};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Trail;

/// The system log event a run appends.
pub const VERIFICATION_EVENT: &str = "verification";
/// Findings kept per tenant in the event (the count is always whole).
pub const KEPT_FINDINGS: usize = 100;

/// One tenant's part of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TenantResult {
    /// The log's size when the run started.
    pub size: u64,
    pub findings: u64,
    /// The first findings, as `aitrail verify` prints them.
    pub examples: Vec<String>,
}

/// What a run found, as the system log keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunEvent {
    pub started_at: String,
    pub finished_at: String,
    pub records: u64,
    pub checkpoints: usize,
    pub tenants: BTreeMap<String, TenantResult>,
}

/// Why the last run cannot be told.
#[derive(Debug, thiserror::Error)]
pub enum LastRunError {
    #[error("a verification event is unreadable: {0}")]
    Unreadable(serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn tenant_of(f: &Finding) -> &str {
    match f {
        Finding::Modified { tenant, .. }
        | Finding::Removed { tenant, .. }
        | Finding::ContentRemoved { tenant, .. }
        | Finding::Reordered { tenant, .. }
        | Finding::Checkpoint { tenant, .. }
        | Finding::Log { tenant, .. } => tenant.as_str(),
        Finding::Inserted { tenant, .. } => tenant,
    }
}

impl Trail {
    /// Verify the whole store against the log key, and record what was found in the system
    /// log, as asked by `actor`; the run, and the id of its event.
    pub async fn verify_recorded(
        &self,
        actor: Actor<'_>,
    ) -> Result<(RunEvent, Option<Uuid>), StoreError> {
        let started_at = Timestamp::now().to_string();
        let mut tenants: BTreeMap<String, TenantResult> = BTreeMap::new();
        for head in self.store.logs().await? {
            tenants.entry(head.tenant_id.to_string()).or_default().size = head.size;
        }
        let report = verify_store(self.store.clone(), &self.signer.verifier(), &|_| {}).await?;
        for finding in &report.findings {
            let t = tenants.entry(tenant_of(finding).to_owned()).or_default();
            t.findings += 1;
            if t.examples.len() < KEPT_FINDINGS {
                t.examples.push(finding.to_string());
            }
        }
        let event = RunEvent {
            started_at,
            finished_at: Timestamp::now().to_string(),
            records: report.records,
            checkpoints: report.checkpoints,
            tenants,
        };
        let attributes = serde_json::to_value(&event).expect("a run serialises");
        let record = system_event(VERIFICATION_EVENT, None, actor.id(), attributes);
        let receipts = self.store.append(vec![record]).await?;
        Ok((event, receipts.first().map(|r| r.id)))
    }

    /// The last run recorded (by any node), and its event's id.
    pub async fn last_verification(&self) -> Result<Option<(RunEvent, Uuid)>, LastRunError> {
        let system = TenantId::system_log().to_string();
        let query = Query::from_pairs(vec![
            ("tenant_id", system.as_str()),
            ("operation_type", VERIFICATION_EVENT),
            ("limit", "1"),
        ])
        .expect("a valid query");
        let Some(last) = self.store.list(&query).await?.records.into_iter().next() else {
            return Ok(None);
        };
        let attributes = serde_json::to_value(&last.record.attributes).unwrap_or_default();
        let event = serde_json::from_value(attributes).map_err(LastRunError::Unreadable)?;
        Ok(Some((event, last.id)))
    }
}
