//! [`TemplateCache`]: the library's face for a test harness.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::cache::clone::{Cloned, Reflink};
use crate::cache::ensure::{BatchItem, EnsureOptions, Ensured, Ensurer, TemplateBuilder};
use crate::cache::key::Capacity;
use crate::cache::per_test::PerTestImage;
use crate::formatter::filesystem::Filesystem;
use crate::guest::builder::OnMiss;
use crate::guest::find_init::GuestInit;
use crate::guest::protocol::Verify;
use crate::progress::Progress;
use crate::runner::{DEFAULT_MEMORY_MIB, DEFAULT_TIMEOUT, VmmChoice};
use crate::store::root;

/// A template root and how its misses are built: what a harness holds, and
/// what the CLI's `template build` and `template clone` go through.
///
/// Cheap to clone and `Send + Sync`: share one across threads. Threads
/// (and processes) asking for one missing template at once boot one guest
/// between them; the others wait for it on the key's lock and then find it.
///
/// The defaults are the CLI's: the kernel from `$KTSTR_KERNEL`, else the
/// newest cached kernel, else a stock one in /boot; `--vmm auto`;
/// [`DEFAULT_TIMEOUT`] per guest, [`DEFAULT_MEMORY_MIB`] of guest memory,
/// [`DEFAULT_LOCK_TIMEOUT`] of waiting for a peer's build, eviction on a
/// full disk unless `$KTSTR_NO_EVICT` is set; no rebuild of a template
/// that exists; no progress lines; no verification; the guest init found
/// as [`GuestInit::Find`] says.
///
/// [`DEFAULT_LOCK_TIMEOUT`]: crate::cache::ensure::DEFAULT_LOCK_TIMEOUT
#[derive(Clone)]
pub struct TemplateCache {
    root: PathBuf,
    /// The guest builder a miss uses unless [`TemplateCache::builder`]
    /// gave another.
    on_miss: OnMiss,
    options: EnsureOptions,
    builder: Option<Arc<dyn TemplateBuilder + Send + Sync>>,
}

impl fmt::Debug for TemplateCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateCache")
            .field("root", &self.root)
            .field("on_miss", &self.on_miss)
            .field("options", &self.options)
            .field("custom_builder", &self.builder.is_some())
            .finish()
    }
}

impl TemplateCache {
    /// The template root the CLI uses without `--cache-dir`:
    /// `$KTSTR_CACHE_DIR/disk_templates`, else
    /// `$XDG_CACHE_HOME/ktstr/disk_templates`, else
    /// `$HOME/.cache/ktstr/disk_templates`.
    pub fn open() -> Result<TemplateCache> {
        Ok(Self::at(root::template_root(None)?))
    }

    /// The template root `root`, as `--cache-dir root` names it (created on
    /// first use).
    pub fn at(root: impl Into<PathBuf>) -> TemplateCache {
        TemplateCache {
            root: root.into(),
            on_miss: OnMiss {
                kernel: None,
                vmm: VmmChoice::Auto,
                timeout: DEFAULT_TIMEOUT,
                memory_mib: DEFAULT_MEMORY_MIB,
                progress: Progress::silent(),
                init: GuestInit::Find,
                verify: Verify::Off,
            },
            options: EnsureOptions::default(),
            builder: None,
        }
    }

    /// The template root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The guest kernel (a bzImage) that builds missing templates.
    pub fn kernel(mut self, kernel: impl Into<PathBuf>) -> Self {
        self.on_miss.kernel = Some(kernel.into());
        self
    }

    /// Which VMM boots the guest (the CLI's `--vmm`).
    pub fn vmm(mut self, vmm: VmmChoice) -> Self {
        self.on_miss.vmm = vmm;
        self
    }

    /// How long a template guest may run before it is stopped.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.on_miss.timeout = timeout;
        self
    }

    /// How long to wait for another thread or process building the same
    /// template.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.options.lock_timeout = timeout;
        self
    }

    /// Guest memory in MiB. A build given less than its kernel and
    /// initramfs need fails before the boot, saying the minimum.
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.on_miss.memory_mib = mib;
        self
    }

    /// Whether to print the CLI's progress lines on stderr while building.
    pub fn progress(mut self, on: bool) -> Self {
        self.on_miss.progress = Progress::new(!on);
        self
    }

    /// On a full disk, whether to remove debris and least recently used
    /// templates no process holds and try once more.
    pub fn evict(mut self, on: bool) -> Self {
        self.options.evict = on;
        self
    }

    /// Whether to build and replace a template even when it exists (the
    /// CLI's `--force`). Only the first ensure of each template in a call
    /// rebuilds; a clone then uses what it built.
    pub fn force(mut self, on: bool) -> Self {
        self.options.force = on;
        self
    }

    /// Where the guest's PID 1 comes from; see [`GuestInit`].
    pub fn init(mut self, init: GuestInit) -> Self {
        self.on_miss.init = init;
        self
    }

    /// Whether a build has the guest mount the new filesystem read-only
    /// (and read its statfs) before it is published: the CLI's
    /// `template build --verify`. A template already in the cache is used
    /// as it is.
    pub fn verify(mut self, on: bool) -> Self {
        self.on_miss.verify = if on { Verify::Mount } else { Verify::Off };
        self
    }

    /// Builds missing templates with `builder` instead of a guest (for
    /// tests: [`HostMkfsBuilder`](crate::HostMkfsBuilder) formats on the
    /// host, no VM needed).
    pub fn builder(mut self, builder: impl TemplateBuilder + Send + Sync + 'static) -> Self {
        self.builder = Some(Arc::new(builder));
        self
    }

    /// The path of the published template for `fs` and `capacity`, built
    /// first if it is missing. Read it, never write it: every clone shares
    /// its blocks.
    pub fn ensure(&self, fs: Filesystem, capacity: Capacity) -> Result<PathBuf> {
        Ok(self.entry(fs, capacity)?.path)
    }

    /// [`TemplateCache::ensure`], saying also the template's key, whether
    /// this call built it, and how long it took.
    pub fn entry(&self, fs: Filesystem, capacity: Capacity) -> Result<Ensured> {
        self.ensurer().ensure(fs, capacity)
    }

    /// [`TemplateCache::ensure`] for several templates at once: the missing
    /// ones are built by one guest with a disk each (a CI warm-up step asks
    /// once for all it needs). The paths in the order asked; an error names
    /// every template that failed, after the others were published.
    pub fn ensure_all(&self, wanted: &[(Filesystem, Capacity)]) -> Result<Vec<PathBuf>> {
        let items = self.ensure_each(wanted)?;
        let total = items.len();
        let mut paths = std::collections::HashMap::new();
        let mut failed = Vec::new();
        for item in items {
            match item.result {
                Ok(ensured) => {
                    paths.insert(item.key, ensured.path);
                }
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        if !failed.is_empty() {
            anyhow::bail!(
                "{} of {total} templates failed:\n{}",
                failed.len(),
                failed.join("\n")
            );
        }
        // `ensure_each` dropped repeats; every pair asked for gets its path.
        let by_pair = |(fs, capacity): &(Filesystem, Capacity)| {
            let found = paths
                .iter()
                .find(|(k, _)| k.fs == *fs && k.capacity == *capacity);
            found.map(|(_, path)| path.clone())
        };
        Ok(wanted.iter().filter_map(by_pair).collect())
    }

    /// [`TemplateCache::entry`] for several templates at once, the missing
    /// ones built by one guest: one item per template, each asked for once,
    /// in the order first asked, each with its own result. An error before
    /// any work when a capacity is below its formatter's minimum or a
    /// formatter is missing.
    pub fn ensure_each(&self, wanted: &[(Filesystem, Capacity)]) -> Result<Vec<BatchItem>> {
        let keys = crate::cache::ensure::batch::keys(wanted)?;
        self.ensurer().ensure_keys(&keys)
    }

    /// Gives `dest` (a new file; its directory must exist) its own
    /// copy-on-write clone of the template for `fs` and `capacity`, built
    /// first if missing, copied as `mode` says: the CLI's `template clone`.
    /// On failure `dest` is removed.
    pub fn clone_to(
        &self,
        fs: Filesystem,
        capacity: Capacity,
        dest: &Path,
        mode: Reflink,
    ) -> Result<Cloned> {
        self.ensurer().clone_to(fs, capacity, dest, mode)
    }

    /// A test's own writable copy-on-write clone of the template for `fs`
    /// and `capacity` (built first if missing): open, removed when dropped.
    pub fn per_test(&self, fs: Filesystem, capacity: Capacity) -> Result<PerTestImage> {
        PerTestImage::create(&self.ensurer(), fs, capacity)
    }

    /// The guest kernel a build would use: [`TemplateCache::kernel`], else
    /// resolved as the CLI resolves it.
    pub fn resolve_kernel(&self) -> Result<PathBuf> {
        crate::kernel::resolve::resolve_from_env(self.on_miss.kernel.as_deref())
    }

    /// The program a guest would run as its init ([`TemplateCache::init`]).
    pub fn resolve_init(&self) -> Result<PathBuf> {
        self.on_miss.init.resolve()
    }

    /// The root, the builder ([`TemplateCache::builder`]'s, else the guest
    /// builder, which resolves kernel, runner and init only on a miss, so a
    /// hit needs none of them) and the options.
    fn ensurer(&self) -> Ensurer<'_> {
        let builder: &dyn TemplateBuilder = match &self.builder {
            Some(custom) => custom.as_ref(),
            None => &self.on_miss,
        };
        Ensurer::new(&self.root, builder).with_options(self.options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_send_and_sync() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<TemplateCache>();
    }
}
