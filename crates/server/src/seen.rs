//! Who a request authenticated as: the `Caller` extractor (a key, or a dashboard session)
//! leaves it here, and the access log middleware reads it after the answer.

use std::sync::{Arc, Mutex};

use aitrail_core::access::Principal;

/// Where the [`Caller`] extractor leaves who the request authenticated as.
#[derive(Clone, Default)]
pub(crate) struct Seen(Arc<Mutex<Option<Principal>>>);

impl Seen {
    pub(crate) fn set(&self, p: &Principal) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
    }

    pub(crate) fn take(&self) -> Option<Principal> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
