//! One integration binary, a module per area. Each runs the real
//! `cargo-ktstr` binary against a temporary cache root.

mod cli;
mod util;
mod vmm_guests;
