//! What each `orex` subcommand does; `main.rs` only parses arguments.

pub mod audit;
pub mod dev;
pub mod report;
pub mod risk;
pub mod up;
