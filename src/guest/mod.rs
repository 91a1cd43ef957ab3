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

pub(crate) mod builder;
pub(crate) mod checks;
pub(crate) mod find_init;
pub(crate) mod init;
pub(crate) mod initramfs;
pub(crate) mod logwrites;
pub(crate) mod memory;
pub(crate) mod nested;
pub(crate) mod powerloss;
pub(crate) mod probe;
pub(crate) mod protocol;
