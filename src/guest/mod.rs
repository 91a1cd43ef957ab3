//! The template-building guest: the host side of a build, the initramfs it
//! boots, and the init that runs the formatter inside it.

pub mod init;
