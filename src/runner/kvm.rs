//! The built-in VMM as a [`super::GuestRunner`].

use anyhow::bail;

use super::{GuestRunner, GuestSpec, RunOutcome};

/// Boots guests with the built-in VMM ([`crate::vmm`]).
#[derive(Debug, Default)]
pub struct KvmRunner;

impl GuestRunner for KvmRunner {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn run(&self, _spec: &GuestSpec) -> anyhow::Result<RunOutcome> {
        bail!("the built-in VMM is not wired yet: use --vmm qemu")
    }
}
