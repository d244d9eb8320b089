//! Compliance exports: what one proves and against which checkpoint, the same for the
//! server's route and the CLI on a store (`aitrail-export` writes and checks the bundle).

use aitrail_core::{TenantId, Timestamp};
use aitrail_export::{Params, Request};
use aitrail_store::StoreError;

use crate::Trail;

impl Trail {
    /// The export of `tenant`'s records that `params` select (its query's own tenant is
    /// replaced: the caller decides whose log), proved against the latest signed checkpoint
    /// of the tenant's log; `None` when the log has none, so no records. `exported_by`: the
    /// key id, or `None` for the operator.
    pub async fn export_request(
        &self,
        tenant: TenantId,
        params: Params,
        exported_by: Option<String>,
    ) -> Result<Option<Request>, StoreError> {
        let Params { format, filters, mut query } = params;
        let Some(checkpoint) = self.store.checkpoint(&tenant, None).await? else {
            return Ok(None);
        };
        query.tenant_id = Some(tenant.clone());
        Ok(Some(Request {
            tenant,
            filters,
            query,
            format,
            exported_by,
            checkpoint,
            generated_at: Timestamp::now(),
        }))
    }
}
