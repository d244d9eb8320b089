pub mod list;
pub mod log;
pub mod serve;
pub mod show;
