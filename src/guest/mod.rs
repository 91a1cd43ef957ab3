//! The template-building guest: the host side of a build
//! ([`crate::guest::builder`]); the initramfs it boots
//! ([`crate::guest::initramfs`]), with the shared objects its programs need
//! ([`crate::elf::libs`]) cut to what runs ([`crate::elf::notes`]); the
//! init that runs the formatter inside it ([`crate::guest::init`]), after
//! loading a stock kernel's modules ([`crate::guest::modules`]); and the
//! result line both sides agree on ([`crate::guest::protocol`]). The memory
//! it needs is checked before a boot ([`crate::guest::memory`]). The same
//! init runs a list of checks ([`crate::guest::checks`]) in the nested-KVM
//! lane's outer guest, which [`crate::guest::nested`] boots, and records the
//! cache's operations for the power-loss lane ([`crate::guest::powerloss`],
//! replayed by [`crate::guest::logwrites`]).

pub(crate) mod builder;
pub(crate) mod checks;
pub(crate) mod disks;
pub(crate) mod dm;
pub(crate) mod find_init;
pub(crate) mod init;
pub(crate) mod initramfs;
pub(crate) mod logwrites;
pub(crate) mod memory;
pub(crate) mod modules;
pub(crate) mod nested;
pub(crate) mod powerloss;
pub(crate) mod probe;
pub(crate) mod protocol;
