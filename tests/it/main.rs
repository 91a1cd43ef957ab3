//! One integration binary, a module per area. Each runs the real
//! `cargo-ktstr` binary against a temporary cache root.

mod architecture;
mod budget;
mod build_e2e;
mod cache;
mod clean;
mod cli;
mod clone;
mod completions;
mod crash;
mod diskfull;
mod edges;
mod facade;
mod grammar;
#[path = "../guests/mod.rs"]
mod guests;
mod heal;
mod hostile;
mod interop;
mod kernel;
mod ktstr50;
mod list;
mod lock;
mod loopfs;
mod misdirected;
mod multi;
mod nested;
mod output;
mod owned;
mod powerloss;
mod real_kvm;
mod remote;
mod sharing;
mod signals;
mod soak;
mod stock;
mod unreadable;
mod users;
mod util;
mod vmm_guests;
