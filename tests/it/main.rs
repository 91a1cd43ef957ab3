//! One integration binary, a module per area. Each runs the real
//! `cargo-ktstr` binary against a temporary cache root.

mod architecture;
mod cache;
mod cli;
mod facade;
mod guest;
mod kernel;
mod remote;
mod support;
