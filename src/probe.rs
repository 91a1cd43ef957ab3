//! A guest that uses a per-test image the way a test would: the init mounts
//! the disk read-write, writes a file named for the test, reads it back and
//! reports. It is what `examples/harness.rs` boots through
//! [`crate::runner`], and a template for a harness's own guests. Both sides
//! live with the guest ([`crate::guest`]), whose init runs the guest side;
//! this is their public face.

pub use crate::guest::probe::{
    DISK_PARAM, MODE_PARAM, NAME_PARAM, Probe, ProbeResult, RESULT_MARKER, probe_contents,
};
