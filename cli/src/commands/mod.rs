//! What each `orex` subcommand does; `main.rs` only parses arguments.

pub mod audit;
pub mod dev;
pub mod emergency;
pub mod report;
pub mod risk;
pub mod stockpile;
pub mod up;
