//! The template-building guest: the host side of a build ([`crate::guest::builder`]), the
//! initramfs it boots ([`crate::guest::initramfs`], [`crate::guest::libs`]), the init that runs the
//! formatter inside it ([`crate::guest::init`]), and the line they agree on ([`crate::guest::protocol`]).

pub mod builder;
pub mod init;
pub mod initramfs;
pub mod libs;
pub mod protocol;
