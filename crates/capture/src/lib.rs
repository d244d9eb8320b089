//! Capture without code changes: what other tools already send, turned into aitrail
//! records. Pure mapping, no I/O: the server decides who may write and stores them.
//!
//! - [`otlp`]: OTLP/HTTP trace exports (protobuf or JSON); spans with `gen_ai.*`
//!   attributes (OpenTelemetry's GenAI semantic conventions, and the older names
//!   OpenLLMetry and OpenInference send) become records (docs/OTLP.md).

pub mod otlp;
mod otlp_bounds;
mod otlp_json;
pub mod proxy;
