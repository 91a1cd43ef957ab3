//! A test harness in miniature: four tests on four threads, each with its
//! own copy-on-write image of one template, each booting a guest that
//! writes a file named for the test onto its image and reads it back.
//! Then the host checks that each image holds only its own test's file and
//! that the template is unchanged.
//!
//! This binary is its guests' init: it calls `cargo_ktstr::init_if_guest()`
//! first thing in `main`, so it needs no `cargo-ktstr` installed.
//!
//! ```text
//! KTSTR_KERNEL=/path/to/bzImage cargo run --example harness
//! ```
//!
//! The images are ext4 so the host can read them without root or a mount:
//! e2fsprogs' `debugfs` lists and reads them.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use cargo_ktstr::probe::{Probe, ProbeResult, probe_contents};
use cargo_ktstr::runner::{DEFAULT_TIMEOUT, RunEnd, select_runner};
use cargo_ktstr::{Capacity, Filesystem, PerTestImage, TemplateCache, VmmChoice};
use sha2::Digest;

const FS: Filesystem = Filesystem::Ext4;
const TESTS: usize = 4;

fn main() -> Result<()> {
    // As PID 1 of a guest this runs the guest's init and never returns.
    cargo_ktstr::init_if_guest();

    let cache = TemplateCache::open()?.progress(true);
    let capacity = Capacity::from_mib(64)?;
    let kernel = cache.resolve_kernel()?;
    let init = cache.resolve_init()?;
    let template = cache.ensure(FS, capacity)?;
    let template_hash = sha256(&template)?;

    let results: Vec<Result<(String, PerTestImage)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..TESTS)
            .map(|i| {
                let (cache, kernel, init) = (&cache, &kernel, &init);
                scope.spawn(move || -> Result<(String, PerTestImage)> {
                    let name = format!("test-{i}");
                    let image = cache.per_test(FS, capacity)?;
                    let runner = select_runner(VmmChoice::Auto)?;
                    let disk = image.path();
                    let probe = Probe {
                        kernel,
                        init,
                        disk: &disk,
                        fs: FS,
                        name: &name,
                        timeout: DEFAULT_TIMEOUT,
                    };
                    let outcome = runner.run(&probe.spec(runner.as_ref())?)?;
                    let result = ProbeResult::from_console(&outcome.console);
                    match (outcome.end, result) {
                        (RunEnd::Reset, Some(r)) if r.ok => {
                            println!("{name}: {} ({})", r.output, runner.name());
                            Ok((name, image))
                        }
                        (end, r) => bail!(
                            "{name}: the guest ended ({end}) with {r:?}; its console:\n{}",
                            outcome.console_tail(30)
                        ),
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a test thread panicked"))
            .collect()
    });

    let images = results.into_iter().collect::<Result<Vec<_>>>()?;
    for (name, image) in &images {
        let path = image.path();
        let mut files = debugfs(&path, "ls -p /")?
            .lines()
            // `ls -p`: /inode/mode/uid/gid/name/size/
            .filter_map(|l| l.split('/').nth(5).map(str::to_owned))
            .filter(|n| !n.is_empty() && n != "." && n != ".." && n != "lost+found")
            .collect::<Vec<_>>();
        files.sort();
        ensure!(
            files == [name.clone()],
            "{name}'s image holds {files:?}, not just its own file"
        );
        let contents = debugfs(&path, &format!("cat /{name}"))?;
        ensure!(
            contents == probe_contents(name),
            "{name}'s file holds {contents:?}"
        );
    }
    ensure!(
        sha256(&template)? == template_hash,
        "the template `{}` changed",
        template.display()
    );
    println!(
        "{TESTS} tests, {TESTS} images: each holds only its own file; the template is unchanged"
    );
    Ok(())
}

/// `debugfs -R <request> <image>`'s stdout; debugfs opens it read-only.
fn debugfs(image: &Path, request: &str) -> Result<String> {
    let out = Command::new("debugfs")
        .args(["-R", request])
        .arg(image)
        .output()
        .context("failed to run debugfs (e2fsprogs)")?;
    ensure!(
        out.status.success(),
        "debugfs -R '{request}' {} failed: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sha256(path: &Path) -> Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("failed to open `{}`", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().to_vec())
}
