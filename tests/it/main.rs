//! One integration binary, a module per area. Each runs the real
//! `cargo-ktstr` binary against a temporary cache root.

mod cache;
mod clean;
mod cli;
mod clone;
mod hostile;
mod list;
mod lock;
mod loopfs;
mod util;
mod vmm_guests;
