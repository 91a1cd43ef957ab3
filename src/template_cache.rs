//! [`TemplateCache`]: the library's face for a test harness.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::cache::ensure::{EnsureOptions, Ensurer, TemplateBuilder};
use crate::cache::key::Capacity;
use crate::cache::per_test::PerTestImage;
use crate::formatter::filesystem::Filesystem;
use crate::guest::builder::OnMiss;
use crate::guest::find_init::GuestInit;
use crate::guest::protocol::Verify;
use crate::progress::Progress;
use crate::runner::VmmChoice;
use crate::store::root;

/// A template root and how its misses are built: what a harness holds.
///
/// Cheap to clone and `Send + Sync`: share one across threads. Threads
/// (and processes) asking for one missing template at once boot one guest
/// between them; the others wait for it on the key's lock and then find it.
///
/// The defaults are the CLI's: the kernel from `$KTSTR_KERNEL`, else the
/// newest cached kernel, else a stock one in /boot; `--vmm auto`; 120 s per
/// guest, 256 MiB of guest memory, 600 s of waiting for a peer's build,
/// eviction on a full disk unless `$KTSTR_NO_EVICT` is set; no progress
/// lines; no verification; the guest init found as [`GuestInit::Find`]
/// says.
#[derive(Clone)]
pub struct TemplateCache {
    root: PathBuf,
    kernel: Option<PathBuf>,
    vmm: VmmChoice,
    timeout: Duration,
    memory_mib: u32,
    progress: bool,
    init: GuestInit,
    verify: bool,
    options: EnsureOptions,
    builder: Option<Arc<dyn TemplateBuilder + Send + Sync>>,
}

impl fmt::Debug for TemplateCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateCache")
            .field("root", &self.root)
            .field("kernel", &self.kernel)
            .field("vmm", &self.vmm)
            .field("timeout", &self.timeout)
            .field("memory_mib", &self.memory_mib)
            .field("progress", &self.progress)
            .field("init", &self.init)
            .field("verify", &self.verify)
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
            kernel: None,
            vmm: VmmChoice::Auto,
            timeout: crate::runner::DEFAULT_TIMEOUT,
            memory_mib: crate::runner::DEFAULT_MEMORY_MIB,
            progress: false,
            init: GuestInit::Find,
            verify: false,
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
        self.kernel = Some(kernel.into());
        self
    }

    /// Which VMM boots the guest (the CLI's `--vmm`).
    pub fn vmm(mut self, vmm: VmmChoice) -> Self {
        self.vmm = vmm;
        self
    }

    /// How long a template guest may run before it is stopped.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long to wait for another thread or process building the same
    /// template.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.options.lock_timeout = timeout;
        self
    }

    /// Guest memory in MiB (default 256). A build given less than its
    /// kernel and initramfs need fails before the boot, saying the minimum.
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Whether to print the CLI's progress lines on stderr while building.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// On a full disk, whether to remove debris and least recently used
    /// templates no process holds and try once more.
    pub fn evict(mut self, on: bool) -> Self {
        self.options.evict = on;
        self
    }

    /// Where the guest's PID 1 comes from; see [`GuestInit`].
    pub fn init(mut self, init: GuestInit) -> Self {
        self.init = init;
        self
    }

    /// Whether a build has the guest mount the new filesystem read-only
    /// (and read its statfs) before it is published: the CLI's
    /// `template build --verify`. A template already in the cache is used
    /// as it is.
    pub fn verify(mut self, on: bool) -> Self {
        self.verify = on;
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
        let on_miss = self.on_miss();
        Ok(self.ensurer(&on_miss).ensure(fs, capacity)?.path)
    }

    /// [`TemplateCache::ensure`] for several templates at once: the missing
    /// ones are built by one guest with a disk each (a CI warm-up step asks
    /// once for all it needs). The paths in the order asked; an error names
    /// every template that failed, after the others were published.
    pub fn ensure_all(&self, wanted: &[(Filesystem, Capacity)]) -> Result<Vec<PathBuf>> {
        let on_miss = self.on_miss();
        let keys = crate::cache::ensure::batch::keys(wanted)?;
        let items = self.ensurer(&on_miss).ensure_keys(&keys)?;
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
                "{} of {} templates failed:\n{}",
                failed.len(),
                keys.len(),
                failed.join("\n")
            );
        }
        // `keys` dropped repeats; every pair asked for gets its path.
        let by_pair = |(fs, capacity): &(Filesystem, Capacity)| {
            let found = paths
                .iter()
                .find(|(k, _)| k.fs == *fs && k.capacity == *capacity);
            found.map(|(_, path)| path.clone())
        };
        Ok(wanted.iter().filter_map(by_pair).collect())
    }

    /// A test's own writable copy-on-write clone of the template for `fs`
    /// and `capacity` (built first if missing): open, removed when dropped.
    pub fn per_test(&self, fs: Filesystem, capacity: Capacity) -> Result<PerTestImage> {
        let on_miss = self.on_miss();
        PerTestImage::create(&self.ensurer(&on_miss), fs, capacity)
    }

    /// The guest kernel a build would use: [`TemplateCache::kernel`], else
    /// resolved as the CLI resolves it.
    pub fn resolve_kernel(&self) -> Result<PathBuf> {
        crate::kernel::resolve::resolve_from_env(self.kernel.as_deref())
    }

    /// The program a guest would run as its init ([`TemplateCache::init`]).
    pub fn resolve_init(&self) -> Result<PathBuf> {
        self.init.resolve()
    }

    /// The root, the builder ([`TemplateCache::builder`]'s, else `on_miss`)
    /// and the options, as every step of the lifecycle takes them.
    fn ensurer<'a>(&'a self, on_miss: &'a OnMiss) -> Ensurer<'a> {
        let builder: &dyn TemplateBuilder = match &self.builder {
            Some(custom) => custom.as_ref(),
            None => on_miss,
        };
        Ensurer::new(&self.root, builder).with_options(self.options)
    }

    /// The CLI's builder, which resolves kernel, runner and init only on a
    /// miss, so a hit needs none of them.
    fn on_miss(&self) -> OnMiss {
        OnMiss {
            kernel: self.kernel.clone(),
            vmm: self.vmm,
            timeout: self.timeout,
            memory_mib: self.memory_mib,
            progress: Progress::new(!self.progress),
            init: self.init.clone(),
            verify: if self.verify {
                Verify::Mount
            } else {
                Verify::Off
            },
        }
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
