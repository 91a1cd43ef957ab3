//! The lifecycle: lookup, lock, look again, build, publish.

use std::path::Path;

use super::key::Key;

/// Formats a staging image. The VM runners implement it through the
/// template-building guest; tests plug in a host-side one.
pub trait TemplateBuilder {
    /// Formats `staging`, a sparse file of `key.capacity` bytes that the
    /// caller created and holds under its flock, with `key.fs`.
    fn build(&self, key: &Key, staging: &Path) -> anyhow::Result<()>;
}
