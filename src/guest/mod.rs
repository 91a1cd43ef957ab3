//! The template-building guest, by side. The host side: a build
//! ([`crate::guest::builder`]); the initramfs it boots
//! ([`crate::guest::initramfs`]), with the shared objects its programs need
//! ([`crate::elf::libs`]) cut to what runs ([`crate::elf::notes`]); the
//! program that becomes its init ([`crate::guest::find_init`]); the memory
//! it needs, checked before a boot ([`crate::guest::memory`]); the
//! nested-KVM lane's outer guest ([`crate::guest::nested`]); and the
//! power-loss lane's recording guest and the replay of its log
//! ([`crate::guest::powerloss`], [`crate::guest::logwrites`]).
//!
//! What both sides agree on: the template result line
//! ([`crate::guest::protocol`]), the check list and its result lines
//! ([`crate::guest::checks`]), the probe's ([`crate::guest::probe`]) and the
//! recording's ([`crate::guest::powerloss`]).
//!
//! The guest side, PID 1, is [`crate::guest::init`]: it dispatches on the
//! kernel command line to the template mode (formatting the disks), the
//! check mode, the probe or the recording, and imports nothing of the host
//! side but what the two agree on.

pub mod builder;
pub mod checks;
pub mod find_init;
pub mod init;
pub mod initramfs;
pub mod logwrites;
pub mod memory;
pub mod nested;
pub mod powerloss;
pub mod probe;
pub mod protocol;
