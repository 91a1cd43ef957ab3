//! `kernel build`: tinyconfig plus the fragments of a [`KernelKind`], merged
//! with the kernel's own merge_config.sh, then `make bzImage`, out of tree, in a
//! scratch directory inside the store; the image and its `.config` are then
//! renamed in as one entry.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::KernelKind;
use super::key::{KeyInputs, Toolchain};
use super::kind::{fragment_options, make_variables};
use super::source::{Source, check_build_tools};
use super::store::{
    CONFIG_FILE, IMAGE_FILE, KernelStore, Provenance, ProvenanceOrigin, VMLINUX_FILE,
};
use crate::progress::{Progress, secs};

/// Lines of build output kept for an error message.
const TAIL_LINES: usize = 30;

/// What `kernel build` did.
#[derive(Debug, Clone)]
pub struct KernelBuild {
    pub name: String,
    pub image: PathBuf,
    /// False when the store already had this kernel, or it was pulled.
    pub built: bool,
    /// True when it came from the remote cache.
    pub pulled: bool,
    pub elapsed: Duration,
}

/// What to build and how.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    /// A template kernel or a KVM host.
    pub kind: KernelKind,
    /// Parallel make jobs.
    pub jobs: usize,
    /// Rebuild even when the store has this kernel.
    pub force: bool,
}

/// A remote kernel cache as a build uses one (the `remote` feature's
/// `Remote`): looked in on a local miss, pushed to after a build.
pub trait KernelRemote {
    /// Fetches the kernel of `inputs` into `store` as `name`, verified;
    /// `Ok(None)` when the remote lacks it.
    fn pull(
        &self,
        store: &KernelStore,
        inputs: &KeyInputs,
        name: &str,
        progress: &Progress,
    ) -> Result<Option<PathBuf>>;
    /// Pushes cached kernel `name`.
    fn push(&self, store: &KernelStore, name: &str, progress: &Progress) -> Result<()>;
    /// Whether this process may write to it.
    fn writable(&self) -> bool;
}

/// Builds (or finds) the kernel of `opts.kind` for `source` in `store`,
/// looking in `remote` on a local miss and pushing to it when writable.
pub fn build(
    store: &KernelStore,
    source: &Path,
    opts: BuildOptions,
    remote: Option<&dyn KernelRemote>,
    progress: &Progress,
) -> Result<KernelBuild> {
    let legacy = |version: &str| opts.kind.entry_name(version);
    let recipe = Recipe {
        label: opts.kind.to_string(),
        fragments: opts.kind.fragments(),
        name: &|version, key| opts.kind.keyed_name(version, key),
        legacy_name: Some(&legacy),
    };
    build_recipe(store, source, &recipe, opts, remote, progress)
}

/// Fragments merged onto tinyconfig, and the cache name of their kernel.
/// [`build`] takes a [`KernelKind`]'s; the benchmark builds an older
/// fragment's kernel, kept as a fixture, into a store of its own.
pub struct Recipe<'a> {
    /// What the kernel is, for messages ("template").
    pub label: String,
    /// (file name, text), in merge order.
    pub fragments: &'a [(&'a str, &'a str)],
    /// The entry name for a source version and the key's short form.
    pub name: &'a dyn Fn(&str, &str) -> String,
    /// The name the store gave this kernel before keys named sources.
    pub legacy_name: Option<&'a dyn Fn(&str) -> String>,
}

impl std::fmt::Debug for Recipe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipe")
            .field("label", &self.label)
            .finish()
    }
}

/// Builds (or finds, or pulls) `recipe`'s kernel for `source` in `store`
/// (`opts.kind` is not used).
pub fn build_recipe(
    store: &KernelStore,
    source: &Path,
    recipe: &Recipe<'_>,
    opts: BuildOptions,
    remote: Option<&dyn KernelRemote>,
    progress: &Progress,
) -> Result<KernelBuild> {
    let start = Instant::now();
    let source = Source::open(source)?;
    let inputs = KeyInputs::compute(&source, recipe.fragments)?;
    let name = (recipe.name)(&inputs.version, &inputs.short_key());
    let done = |image, built, pulled| KernelBuild {
        name: name.clone(),
        image,
        built,
        pulled,
        elapsed: start.elapsed(),
    };
    if !opts.force {
        if let Some(image) = store.lookup(&name)? {
            progress.step("Found", format!("kernel {name} in the cache"));
            return Ok(done(image, false, false));
        }
        let legacy = recipe.legacy_name.map(|f| f(&inputs.version));
        if let Some(image) = adopt_legacy(store, &source, &inputs, legacy.as_deref(), &name)? {
            progress.step(
                "Found",
                format!(
                    "kernel {name} in the cache (as {}, from this unchanged tarball)",
                    legacy.unwrap_or_default()
                ),
            );
            return Ok(done(image, false, false));
        }
        if let Some(remote) = remote {
            match remote.pull(store, &inputs, &name, progress) {
                Ok(Some(image)) => return Ok(done(image, false, true)),
                Ok(None) => progress.step("Missed", format!("kernel {name}: not in the remote")),
                Err(e) => eprintln!(
                    "warning: pulling kernel {name} failed, building it here instead: {e:#}"
                ),
            }
        }
    }
    let image = build_entry(store, &source, &name, &inputs, recipe, opts, progress)?;
    progress.step(
        "Finished",
        format!("kernel {name} in {}", secs(start.elapsed())),
    );
    if let Some(remote) = remote.filter(|r| r.writable()) {
        if !inputs.source.shareable() {
            progress.step(
                "Not pushing",
                format!("kernel {name}: its git tree has uncommitted changes"),
            );
        } else if let Err(e) = remote.push(store, &name, progress) {
            eprintln!("warning: pushing kernel {name} failed (it is cached here): {e:#}");
        }
    }
    Ok(done(image, true, false))
}

/// A kernel cached under its name from before keys named sources, taken
/// over when the source is a tarball not modified since that kernel was
/// built: hard links into a new entry under `name`, the old one left as it
/// is. A source directory never is: its edits leave no such trace.
fn adopt_legacy(
    store: &KernelStore,
    source: &Source,
    inputs: &KeyInputs,
    legacy: Option<&str>,
    name: &str,
) -> Result<Option<PathBuf>> {
    let (Source::Tarball { path, .. }, Some(legacy)) = (source, legacy) else {
        return Ok(None);
    };
    let Some(old_image) = store.lookup(legacy)? else {
        return Ok(None);
    };
    let old = store.dir().join(legacy);
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let unchanged = matches!((mtime(path), mtime(&old_image)), (Some(t), Some(k)) if t <= k);
    if !unchanged || Provenance::read(&old)?.is_some() {
        return Ok(None);
    }
    let (scratch_dir, _held) = store.create_scratch(name)?;
    let scratch = Scratch(scratch_dir);
    let entry = scratch.0.join("entry");
    fs::create_dir(&entry).with_context(|| format!("failed to create `{}`", entry.display()))?;
    for file in [IMAGE_FILE, VMLINUX_FILE, CONFIG_FILE] {
        let from = old.join(file);
        if from.exists() {
            fs::hard_link(&from, entry.join(file))
                .with_context(|| format!("failed to link `{}`", from.display()))?;
        }
    }
    Provenance {
        origin: ProvenanceOrigin::Adopted,
        remote: None,
        key: inputs.key(),
        inputs: inputs.clone(),
        toolchain: Toolchain::detect(),
    }
    .write(&entry)?;
    store.publish(&entry, name).map(Some)
}

/// Unpacks, configures and compiles `source` in a scratch directory of
/// `store`, then publishes the image as entry `name`.
fn build_entry(
    store: &KernelStore,
    source: &Source,
    name: &str,
    inputs: &KeyInputs,
    recipe: &Recipe<'_>,
    BuildOptions { jobs, force, .. }: BuildOptions,
    progress: &Progress,
) -> Result<PathBuf> {
    check_build_tools()?;
    for swept in store.sweep_scratch()? {
        progress.step(
            "Removed",
            format!("`{}`, left by a build that died", swept.display()),
        );
    }
    let (scratch_dir, _held) = store.create_scratch(name)?;
    let scratch = Scratch(scratch_dir);
    if matches!(source, Source::Tarball { .. }) {
        progress.step("Unpacking", source.display());
    }
    let tree = source.unpack(&scratch.0)?;
    let out = scratch.0.join("out");
    progress.step(
        "Configuring",
        format!("{name}: tinyconfig + the {} fragments", recipe.label),
    );
    configure(&tree, &out, &scratch.0, recipe.fragments)?;
    progress.step(
        "Compiling",
        format!("bzImage with make -j{jobs} (about 4 minutes with -j2)"),
    );
    let jobs = format!("-j{jobs}");
    let mut args = vec![jobs.as_str(), "bzImage"];
    args.extend(make_variables(recipe.fragments));
    make(&tree, &out, &args, progress)?;
    let entry = stage_entry(&scratch.0, &out)?;
    Provenance {
        origin: ProvenanceOrigin::Built,
        remote: None,
        key: inputs.key(),
        inputs: inputs.clone(),
        toolchain: Toolchain::detect(),
    }
    .write(&entry)?;
    if force {
        // The old kernel, swapped into the scratch directory, goes with it.
        return store.replace(&entry, name);
    }
    store.publish(&entry, name)
}

/// tinyconfig, merge the fragments, olddefconfig; then check every option
/// of the fragments made it (an unmet dependency drops one silently).
fn configure(tree: &Path, out: &Path, scratch: &Path, fragments: &[(&str, &str)]) -> Result<()> {
    make(tree, out, &["tinyconfig"], &Progress::silent())?;
    let config = out.join(".config");
    let mut merge = Command::new(tree.join("scripts/kconfig/merge_config.sh"));
    merge
        .current_dir(tree)
        .arg("-m")
        .arg("-O")
        .arg(out)
        .arg(&config);
    for (file, text) in fragments {
        let fragment = scratch.join(file);
        fs::write(&fragment, text)
            .with_context(|| format!("failed to write `{}`", fragment.display()))?;
        merge.arg(&fragment);
    }
    run_logged(merge, "merge_config.sh", None)?;
    make(tree, out, &["olddefconfig"], &Progress::silent())?;
    let merged = fs::read_to_string(&config)
        .with_context(|| format!("failed to read `{}`", config.display()))?;
    let missing = missing_options(&merged, fragments);
    if !missing.is_empty() {
        bail!(
            "the merged kernel config lacks {} (a dependency this kernel version does not \
             meet); this kernel source cannot build the template guest",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Options of the fragment the merged `.config` does not have as asked.
fn missing_options(config: &str, fragments: &[(&str, &str)]) -> Vec<String> {
    let (on, off) = fragment_options(fragments);
    let set = |name: &str| config.lines().any(|l| l == format!("{name}=y"));
    on.into_iter()
        .filter(|name| !set(name))
        .map(str::to_owned)
        .chain(
            off.into_iter()
                .filter(|name| set(name))
                .map(|n| format!("{n} (must be off)")),
        )
        .collect()
}

fn make(tree: &Path, out: &Path, args: &[&str], progress: &Progress) -> Result<()> {
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(tree).arg(format!("O={}", out.display()));
    cmd.args(args);
    run_logged(cmd, &format!("make {}", args.join(" ")), Some(progress))
}

/// Runs `cmd` with stdout and stderr on one pipe, showing each line on the
/// spinner and keeping the last [`TAIL_LINES`] for the error.
fn run_logged(mut cmd: Command, what: &str, progress: Option<&Progress>) -> Result<()> {
    // Close-on-exec: no other child spawned meanwhile keeps a write end
    // open (and the read loop from ever seeing EOF).
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("failed to create a pipe")?;
    let write2 = write.try_clone().context("failed to duplicate a pipe")?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write2));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to run {what}"))?;
    // The parent's copies of the write end went into `cmd`; drop them so
    // the read loop sees EOF when the child exits.
    drop(cmd);
    let spinner = progress.map(|p| p.spinner("Compiling"));
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    for line in BufReader::new(File::from(read)).split(b'\n') {
        let line =
            String::from_utf8_lossy(&line.context("failed to read build output")?).into_owned();
        if let Some(spinner) = &spinner {
            spinner.set_message(&line);
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let status = child
        .wait()
        .with_context(|| format!("failed to wait for {what}"))?;
    if !status.success() {
        let tail: Vec<String> = tail.into();
        bail!(
            "{what} failed ({status}); its last lines:\n{}",
            tail.join("\n")
        );
    }
    Ok(())
}

/// Copies the image, its uncompressed vmlinux and its config into
/// `<scratch>/entry`, synced, ready to be renamed into the store.
fn stage_entry(scratch: &Path, out: &Path) -> Result<PathBuf> {
    stage_files(
        scratch,
        &[
            (out.join("arch/x86/boot/bzImage"), IMAGE_FILE),
            (out.join("vmlinux"), VMLINUX_FILE),
            (out.join(".config"), CONFIG_FILE),
        ],
    )
}

/// Copies each `(from, name)` into `<scratch>/entry/<name>`, the files and
/// the directory synced (the power-loss lane stages its kernel so too).
pub(crate) fn stage_files(scratch: &Path, files: &[(PathBuf, &str)]) -> Result<PathBuf> {
    let entry = scratch.join("entry");
    fs::create_dir(&entry).with_context(|| format!("failed to create `{}`", entry.display()))?;
    for (from, to) in files {
        let dest = entry.join(to);
        fs::copy(from, &dest).with_context(|| format!("failed to copy `{}`", from.display()))?;
        File::open(&dest)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("failed to sync `{}`", dest.display()))?;
    }
    // The names too, before the rename publishes them.
    File::open(&entry)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to sync `{}`", entry.display()))?;
    Ok(entry)
}

/// The build's scratch directory, removed whichever way the build ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_missing_an_option_is_reported() {
        let kind = KernelKind::KvmHost;
        let (on, _) = kind.options();
        let full: String = on.iter().map(|o| format!("{o}=y\n")).collect();
        let kind = kind.fragments();
        assert!(missing_options(&full, kind).is_empty());
        let lacking = full.replace("CONFIG_KVM_AMD=y\n", "# CONFIG_KVM_AMD is not set\n");
        assert_eq!(missing_options(&lacking, kind), ["CONFIG_KVM_AMD"]);
        // The template kernel does not need KVM.
        assert!(missing_options(&lacking, KernelKind::Template.fragments()).is_empty());
        let modules = format!("{full}CONFIG_MODULES=y\n");
        assert_eq!(
            missing_options(&modules, kind),
            ["CONFIG_MODULES (must be off)"]
        );
    }

    #[test]
    fn the_command_inherits_only_its_standard_streams() {
        // Every descriptor of the command open on the output pipe: only its
        // stdout and stderr, not the pipe's original read and write ends.
        let mut cmd = Command::new("sh");
        let list = "for f in /proc/$$/fd/*; do echo \"${f##*/} $(readlink $f)\"; done; exit 1";
        cmd.args(["-c", list]);
        let err = run_logged(cmd, "sh", None).unwrap_err().to_string();
        let fds: Vec<(&str, &str)> = err.lines().filter_map(|l| l.split_once(' ')).collect();
        let pipe = fds.iter().find(|(fd, _)| *fd == "1").unwrap().1;
        let on_pipe: Vec<&str> = fds.iter().filter(|f| f.1 == pipe).map(|f| f.0).collect();
        assert_eq!(on_pipe, ["1", "2"], "{err}");
    }

    #[test]
    fn a_failing_command_shows_its_last_lines() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 50); do echo line$i; done; echo oops >&2; exit 3",
        ]);
        let err = run_logged(cmd, "the step", None).unwrap_err().to_string();
        assert!(err.contains("the step failed"), "{err}");
        assert!(
            err.contains("line50\noops") && !err.contains("line20\n"),
            "{err}"
        );
    }
}
