pub mod checkpoint;
pub mod import;
pub mod list;
pub mod log;
pub mod migrate;
pub mod serve;
pub mod show;
pub mod verify;
