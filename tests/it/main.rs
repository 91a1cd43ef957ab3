//! One integration binary, a module per area. Each runs the real
//! `cargo-ktstr` binary against a temporary cache root.

mod build_e2e;
mod cli;
mod util;
