//! The formatter fingerprint: SHA-256 of its version output.
