//! The template-building guest: the host side of a build ([`builder`]), the
//! initramfs it boots ([`initramfs`], [`libs`]), the init that runs the
//! formatter inside it ([`init`]), and the line they agree on ([`protocol`]).

pub mod builder;
pub mod init;
pub mod initramfs;
pub mod libs;
pub mod protocol;
