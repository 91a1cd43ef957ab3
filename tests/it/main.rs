//! One integration binary, a module per area. Each runs the real
//! `cargo-ktstr` binary against a temporary cache root.

mod clean;
mod cli;
mod list;
mod util;
