//! Tests that boot guests: template builds in QEMU and the built-in VMM,
//! the VMM's own synthetic guests, the nested-KVM lane and the power-loss
//! lane.

pub(crate) mod build_e2e;
#[path = "../../guests/mod.rs"]
mod guests;
mod nested;
mod powerloss;
mod real_kvm;
mod vmm_guests;
