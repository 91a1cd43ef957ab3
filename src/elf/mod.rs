//! ELF files, as the initramfs needs them: the shared objects a program
//! loads, resolved as the dynamic loader would ([`libs`]), and a file read
//! and cut after its last segment, or its notes read ([`notes`]).

pub(crate) mod libs;
pub(crate) mod notes;
