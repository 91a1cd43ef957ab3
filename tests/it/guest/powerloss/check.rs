//! The replay: the recorded disk brought to each state in turn on a btrfs
//! scratch (each state a reflink of the running replay, so no state costs a
//! copy), mounted read-write as a reboot would (the journal recovers), and
//! judged by the tool itself: its lookup, `template list --json`, then
//! `clean` and the lookup again.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cargo_ktstr::testing::cache::clone::{Reflink, clone_file};
use cargo_ktstr::testing::cache::key::Key;
use cargo_ktstr::testing::cache::lookup::{Entry, lookup};
use cargo_ktstr::testing::guest::logwrites::{Log, Torn, check_points, torn_states};
use cargo_ktstr::testing::guest::powerloss::OpRecord;
use cargo_ktstr::testing::guest::powerloss::{KERNEL_NAME, KERNELS, TEMPLATES};
use cargo_ktstr::testing::kernel::store::KernelStore;
use rand::SeedableRng;
use serde_json::Value;

use super::Recorded;
use crate::support::ktstr_cmd;
use crate::support::loopfs::LoopFs;

/// What the replay of one recording checked.
#[derive(Debug, Default)]
pub(super) struct Figures {
    /// States at flushes, FUA writes and marks.
    pub points: usize,
    /// Cuts between flushes.
    pub torn: usize,
    /// States by the operation in flight (or last returned) there.
    pub per_op: BTreeMap<String, usize>,
    pub secs: f64,
    /// Every broken invariant, with the state that broke it.
    pub violations: Vec<String>,
}

/// Which state a check is of, for messages.
enum State<'a> {
    At(usize),
    Torn(&'a Torn),
}

impl std::fmt::Display for State<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::At(i) => write!(f, "the state after log entry {i}"),
            State::Torn(t) => write!(
                f,
                "a cut after flush entry {} keeping entries {:?} and dropping {} writes",
                t.base, t.kept, t.dropped
            ),
        }
    }
}

/// What the records say may and must be there at a state.
struct Model<'a> {
    records: &'a [OpRecord],
    /// The log index of each record's mark.
    marks: Vec<usize>,
}

impl Model<'_> {
    /// The last operation returned by log index `i`.
    fn returned(&self, i: usize) -> usize {
        self.marks.iter().rposition(|&m| m <= i).unwrap_or(0)
    }

    /// The operation in flight at `i` (the last one, past the end).
    fn started(&self, i: usize) -> usize {
        (self.returned(i) + 1).min(self.records.len() - 1)
    }

    /// The hashes entry `name` may have at `i`, from template or kernel
    /// publishes.
    fn allowed(&self, i: usize, name: &str, kernel: bool) -> Vec<&str> {
        self.records[..=self.started(i)]
            .iter()
            .flat_map(|r| if kernel { &r.kernels } else { &r.published })
            .filter(|p| p.name == name)
            .map(|p| p.sha256.as_str())
            .collect()
    }

    /// The operation whose publish of `name` had returned at `i` and that
    /// nothing started since may have removed: it must be there.
    fn required(&self, i: usize, name: &str, kernel: bool) -> Option<usize> {
        let list = |r: &OpRecord| {
            if kernel {
                r.kernels.clone()
            } else {
                r.published.clone()
            }
        };
        let last = (0..=self.returned(i))
            .rev()
            .find(|&n| list(&self.records[n]).iter().any(|p| p.name == name))?;
        let removed =
            (last + 1..=self.started(i)).any(|n| self.records[n].removed.iter().any(|r| r == name));
        (!removed).then_some(last)
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = (self.records.iter())
            .flat_map(|r| r.published.iter().map(|p| p.name.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Replays `rec` to every check point and `samples` cuts drawn with
/// `seed`, checking each.
pub(super) fn replay(rec: &Recorded, samples: usize, seed: u64) -> Figures {
    let start = Instant::now();
    let log = Log::open(&rec.log()).unwrap();
    let marks: Vec<usize> = (rec.records.iter())
        .map(|r| {
            log.mark(&r.mark())
                .unwrap_or_else(|| panic!("no mark {}", r.mark()))
        })
        .collect();
    let model = Model {
        records: &rec.records,
        marks,
    };
    let ready = model.marks[0];
    let points = check_points(&log, ready);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let cuts = torn_states(&log, ready, samples, &mut rng);

    let scratch = LoopFs::new("btrfs", 2048).expect("a btrfs scratch for reflinks");
    let work_path = scratch.path().join("work.img");
    let work = File::create(&work_path).unwrap();
    work.set_len(std::fs::metadata(rec.data()).unwrap().len())
        .unwrap();
    let mnt = scratch.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut figures = Figures::default();
    let (mut next_point, mut next_cut) = (0, 0);
    for i in 0..log.entries.len() {
        log.apply(i, &work).unwrap();
        if points.get(next_point) == Some(&i) {
            next_point += 1;
            figures.points += 1;
            check_state(
                &scratch,
                &work_path,
                &[],
                &log,
                &mnt,
                &model,
                i,
                State::At(i),
                &mut figures,
            );
        }
        while cuts.get(next_cut).is_some_and(|c| c.base == i) {
            let cut = &cuts[next_cut];
            next_cut += 1;
            figures.torn += 1;
            check_state(
                &scratch,
                &work_path,
                &cut.kept,
                &log,
                &mnt,
                &model,
                i,
                State::Torn(cut),
                &mut figures,
            );
        }
    }
    figures.secs = start.elapsed().as_secs_f64();
    figures
}

/// Brings a reflink of the replay to the state (`extra` entries applied
/// on top), mounts it and checks it.
#[allow(clippy::too_many_arguments)]
fn check_state(
    scratch: &LoopFs,
    work: &Path,
    extra: &[usize],
    log: &Log,
    mnt: &Path,
    model: &Model<'_>,
    i: usize,
    state: State<'_>,
    figures: &mut Figures,
) {
    let image = scratch.path().join("state.img");
    let _ = std::fs::remove_file(&image);
    clone_file(work, &image, Reflink::Always).unwrap();
    let file = File::options().write(true).open(&image).unwrap();
    for &e in extra {
        log.apply(e, &file).unwrap();
    }
    drop(file);
    let op = &model.records[model.started(i)].op;
    *figures.per_op.entry(op.clone()).or_default() += 1;
    let out = Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(&image)
        .arg(mnt)
        .output()
        .unwrap();
    if !out.status.success() {
        figures.violations.push(format!(
            "{state} (during {op}): the filesystem does not mount: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        return;
    }
    let found = judge(mnt, model, i);
    let umount = Command::new("umount").arg(mnt).status().unwrap();
    assert!(umount.success(), "failed to unmount {}", mnt.display());
    figures.violations.extend(
        found
            .into_iter()
            .map(|v| format!("{state} (during {op}): {v}")),
    );
}

/// The invariants at log index `i` of the filesystem mounted at `mnt`.
fn judge(mnt: &Path, model: &Model<'_>, i: usize) -> Vec<String> {
    let root = mnt.join(TEMPLATES);
    let mut found = entries(&root, model, i);
    found.extend(listed(&root, model, false));
    found.extend(kernel(mnt, model, i));
    // A reboot's `clean` then leaves only valid entries, and every one
    // that must be there.
    let out = ktstr_cmd(&root)
        .env("KTSTR_CACHE_DIR", mnt)
        .args(["clean", "--json"])
        .output()
        .unwrap();
    if !out.status.success() {
        found.push(format!(
            "clean failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    found.extend(
        entries(&root, model, i)
            .into_iter()
            .map(|v| format!("after clean: {v}")),
    );
    found.extend(
        listed(&root, model, true)
            .into_iter()
            .map(|v| format!("after clean: {v}")),
    );
    found
}

/// The tool's lookup of every key the run published.
fn entries(root: &Path, model: &Model<'_>, i: usize) -> Vec<String> {
    let mut found = Vec::new();
    for name in model.keys() {
        let key: Key = name.parse().unwrap();
        let allowed = model.allowed(i, &name, false);
        match lookup(root, &key) {
            Ok(Entry::Valid(path)) => {
                let hash = sha256(&path);
                if !allowed.contains(&hash.as_str()) {
                    found.push(format!(
                        "{name} is served with bytes no publish of it wrote (sha256 {hash}, \
                         published: {allowed:?})"
                    ));
                }
            }
            Ok(Entry::Absent) => {
                if let Some(n) = model.required(i, &name, false) {
                    found.push(format!(
                        "{name} is missing, though operation {n} had published it"
                    ));
                }
            }
            Ok(other) => found.push(format!("{name} is a torn or foreign entry: {other:?}")),
            Err(e) => found.push(format!("the lookup of {name} failed: {e:#}")),
        }
    }
    found
}

/// `template list --json`: no entry but the run's, none invalid; after
/// `clean`, no debris either.
fn listed(root: &Path, model: &Model<'_>, cleaned: bool) -> Vec<String> {
    let out = ktstr_cmd(root)
        .args(["template", "list", "--json"])
        .output()
        .unwrap();
    if !out.status.success() {
        return vec![format!(
            "template list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )];
    }
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = model.keys();
    let mut found = Vec::new();
    for entry in doc["entries"].as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap_or_default();
        let state = entry["state"].as_str().unwrap_or_default();
        if !keys.iter().any(|k| k == name) {
            found.push(format!(
                "template list shows `{name}` ({state}), which no publish made"
            ));
        } else if state != "ok" {
            found.push(format!(
                "template list shows {name} as {state}: {}",
                entry["detail"]
            ));
        }
    }
    let debris = &doc["debris"];
    let count = ["in_flight", "staging_dir", "per_test"]
        .iter()
        .map(|k| debris[k].as_u64().unwrap_or(0))
        .sum::<u64>();
    if cleaned && count > 0 {
        found.push(format!("debris is left after clean: {debris}"));
    }
    found
}

/// The kernel store: the entry, when there, is a published one's bytes.
fn kernel(mnt: &Path, model: &Model<'_>, i: usize) -> Vec<String> {
    let store = KernelStore::new(mnt.join(KERNELS));
    let allowed = model.allowed(i, KERNEL_NAME, true);
    match store.lookup(KERNEL_NAME) {
        Ok(Some(image)) => {
            let hash = sha256(&image);
            match allowed.contains(&hash.as_str()) {
                true => Vec::new(),
                false => vec![format!(
                    "kernel {KERNEL_NAME} is served with bytes no publish wrote (sha256 {hash})"
                )],
            }
        }
        Ok(None) => match model.required(i, KERNEL_NAME, true) {
            Some(n) => vec![format!(
                "kernel {KERNEL_NAME} is missing, though operation {n} had published it (the \
                 store holds {:?})",
                tree(&mnt.join(KERNELS))
            )],
            None => Vec::new(),
        },
        Err(e) => vec![format!("the kernel lookup failed: {e:#}")],
    }
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every path under `dir` with its size, for a message.
fn tree(dir: &Path) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let len = entry.metadata().map_or(0, |m| m.len());
        found.push((path.display().to_string(), len));
        if path.is_dir() {
            found.extend(tree(&path));
        }
    }
    found
}
