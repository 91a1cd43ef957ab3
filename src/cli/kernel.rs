//! `cargo ktstr kernel build|list`: parse and call [`crate::kernel`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::kernel::KernelKind;
use crate::kernel::build::{self, BuildOptions};
use crate::kernel::clean::{self as kernel_clean, KernelCleanOptions, KernelCleanReport};
use crate::kernel::resolve::{Available, HostKernels, KERNEL_ENV, Origin, available};
use crate::kernel::store::KernelStore;
use crate::kernel::unreadable::make_readable;
use crate::progress::Progress;
use crate::store::space;

#[derive(Debug, Subcommand)]
pub(crate) enum KernelCommand {
    /// Build a guest bzImage from a kernel source tree or tarball and cache it
    /// (pulled from the remote kernel cache instead, when it has it).
    Build(KernelBuildArgs),
    /// Push cached kernels to the remote kernel cache.
    Push(super::remote::KernelPushArgs),
    /// List the kernels a template build can use: cached ones, and stock
    /// kernels in /boot with their modules; the first is the default. Those
    /// this user cannot read follow the readable ones, marked unreadable.
    List(KernelListArgs),
    /// Remove dead builds' scratch and, with --keep or --older-than, cached
    /// kernels no build is using.
    Clean(KernelCleanArgs),
}

#[derive(Debug, Args)]
pub(crate) struct KernelCleanArgs {
    /// Keep the N most recently used kernels of each kind (template, kvm-host).
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,

    /// Remove kernels last used longer ago than DURATION: 90s, 30m, 12h, 7d, 2w,
    /// a bare number is seconds (with --keep, only those beyond the N kept).
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub older_than: Option<std::time::Duration>,

    /// List what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct KernelBuildArgs {
    /// A kernel source directory or tarball (e.g. /usr/src/linux-source-6.12.tar.xz).
    #[arg(long, value_name = "PATH")]
    pub source: PathBuf,

    /// Parallel make jobs [default: the number of CPUs].
    #[arg(long, short, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,

    /// Rebuild even when the cache has this kernel.
    #[arg(long)]
    pub force: bool,

    /// What the kernel is for: the template guest, or the KVM host of the
    /// nested-KVM test lane (the template kernel plus KVM and KVM_AMD).
    #[arg(long, value_enum, default_value_t = KindArg::Template)]
    pub kind: KindArg,

    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
}

/// `--kind`, mapped onto [`KernelKind`].
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Template,
    KvmHost,
}

impl From<KindArg> for KernelKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Template => KernelKind::Template,
            KindArg::KvmHost => KernelKind::KvmHost,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct KernelListArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(global: &GlobalArgs, cmd: KernelCommand) -> Result<ExitCode> {
    let store = KernelStore::from_env()?;
    match cmd {
        KernelCommand::Build(args) => {
            let jobs = args.jobs.map_or_else(crate::host::cores, |j| j as usize);
            let progress = Progress::new(global.quiet);
            let opts = BuildOptions {
                kind: args.kind.into(),
                jobs,
                force: args.force,
            };
            let remote = super::remote::open(&args.remote)?;
            let built = build::build(&store, &args.source, opts, remote.as_deref(), &progress)?;
            super::print_stdout(&format!("{}\n", built.image.display()))?;
        }
        KernelCommand::Push(args) => return super::remote::push(global, &store, args),
        KernelCommand::Clean(args) => {
            let opts = KernelCleanOptions {
                keep: args.keep,
                older_than: args.older_than,
                dry_run: args.dry_run,
            };
            let report = kernel_clean::clean(&store, opts)?;
            let text = if args.json {
                serde_json::to_string_pretty(&report)? + "\n"
            } else {
                render_clean(&report)
            };
            super::print_stdout(&text)?;
        }
        KernelCommand::List(args) => {
            let host = HostKernels::from_env();
            let kernels = available(std::env::var_os(KERNEL_ENV), &store, &host)?;
            if args.json {
                super::print_stdout(&(serde_json::to_string_pretty(&kernels)? + "\n"))?;
                return Ok(ExitCode::SUCCESS);
            }
            super::print_stdout(&render_list(&kernels))?;
            if !kernels.iter().any(|k| k.readable) {
                eprintln!(
                    "no usable kernel: none cached in `{}`, and {}; build one with \
                     `cargo ktstr kernel build --source PATH`, or install the distribution's \
                     kernel package",
                    store.dir().display(),
                    host.unusable_text(&host.found())
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text form of `kernel list`: a line per kernel, tab-separated.
fn render_list(kernels: &[Available]) -> String {
    let mut text = String::new();
    for k in kernels {
        let origin = if k.readable {
            provenance_text(k)
        } else {
            format!("unreadable: make it readable ({})", make_readable(&k.image))
        };
        text += &format!(
            "{}\t{}\t{:.1} MiB\t{}\t{origin}\n",
            k.name,
            k.kind,
            k.size as f64 / (1 << 20) as f64,
            k.image.display(),
        );
    }
    text
}

/// Where a listed kernel comes from: a cached one's recorded provenance
/// when it has one.
fn provenance_text(k: &Available) -> String {
    use crate::kernel::store::ProvenanceOrigin as P;
    match &k.provenance {
        Some(p) => match p.origin {
            P::Built => "built here by `kernel build`".to_owned(),
            P::Pulled => format!(
                "pulled from {}, verified",
                p.remote.as_deref().unwrap_or("a remote")
            ),
            P::Adopted => "built by `kernel build` before sources were keyed".to_owned(),
        },
        None => origin_text(k.origin).to_owned(),
    }
}

/// Where a listed kernel comes from, for people.
fn origin_text(origin: Origin) -> &'static str {
    match origin {
        Origin::Env => "from $KTSTR_KERNEL",
        Origin::Cache => "built by `kernel build`",
        Origin::Running => "the running kernel's, with its modules",
        Origin::Boot => "stock, with its modules",
    }
}

/// The text form of `kernel clean`: each removal, what was kept, the summary.
pub(crate) fn render_clean(report: &KernelCleanReport) -> String {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut out = String::new();
    for r in &report.removed {
        let used = r.last_used_secs.map_or(String::new(), |s| {
            format!(", last used {} ago", crate::cache::list::human_age(s))
        });
        out += &format!(
            "{verb} {} ({}; {}{used})\n",
            r.name,
            space::human_bytes(r.bytes),
            r.reason
        );
    }
    for k in &report.kept {
        out += &format!("kept {}: {}\n", k.name, k.reason);
    }
    out + &report.summary() + "\n"
}
