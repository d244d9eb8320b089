//! aitrail's pure core: the audit record, how it is parsed and validated, and the query
//! over it. No I/O, no async, no SQL, no HTTP: everything here is plain data and functions.

pub mod access;
pub mod csv;
pub mod entry;
pub mod ingest;
pub mod legacy;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod query;
pub mod record;
pub mod seal;
pub mod secrets;
pub mod session;
pub mod tiles;
pub mod usage;
pub mod value;

pub use ingest::{BodyError, BodyFormat, FieldError, Parsed, Sent, parse_body};
pub use query::{Cursor, Query};
pub use record::{Receipt, Record, StoredRecord};
pub use value::{TenantId, Timestamp};
