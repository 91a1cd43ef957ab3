//! `--remote`, `kernel push` and `remote check`: parse and call
//! `crate::remote` (the `remote` feature). Without the feature the
//! flags stay, so help and completions are one model, and say how to get it.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::kernel::build::KernelRemote;
use crate::kernel::store::KernelStore;

#[derive(Debug, Subcommand)]
pub(crate) enum RemoteCommand {
    /// Say what the remote kernel cache can do (read, list, write,
    /// conditional write) and its round trip; exit 1 when it is unreachable.
    Check(RemoteCheckArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RemoteCheckArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,

    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Which remote kernel cache, and whether this process may write to it.
#[derive(Debug, Clone, Args)]
pub(crate) struct RemoteArgs {
    /// The remote kernel cache [default: $KTSTR_REMOTE_CACHE]:
    /// s3://BUCKET/PREFIX?endpoint=URL&region=REGION (credentials from
    /// AWS_*), webdav+http://HOST/PATH, file:///PATH or gha://PREFIX.
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,

    /// Allow writes to the remote, as KTSTR_REMOTE_CACHE_MODE=read-write
    /// does; it is read-only otherwise (give a fork's pull request neither).
    #[arg(long)]
    pub remote_write: bool,
}

#[derive(Debug, Args)]
pub(crate) struct KernelPushArgs {
    /// Cached kernels to push, as `kernel list` names them [default: every
    /// cached kernel that may be shared].
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,

    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "remote")]
mod imp {
    use super::*;
    use crate::kernel::store::ProvenanceOrigin;
    use crate::progress::Progress;
    use crate::remote::check::{CheckReport, Probe};
    use crate::remote::{Remote, RemoteSpec};
    use anyhow::{Context, bail};

    pub(super) fn open(args: &RemoteArgs) -> Result<Option<Remote>> {
        let Some(spec) = RemoteSpec::from_args(args.remote.as_deref(), args.remote_write)? else {
            return Ok(None);
        };
        Remote::open(spec).map(Some)
    }

    fn required(args: &RemoteArgs) -> Result<Remote> {
        open(args)?.context(
            "no remote kernel cache: pass --remote URL or set KTSTR_REMOTE_CACHE \
             (docs/remote-cache.md)",
        )
    }

    pub(super) fn check(_: &GlobalArgs, args: RemoteCheckArgs) -> Result<ExitCode> {
        let report = required(&args.remote)?.check()?;
        let text = if args.json {
            serde_json::to_string_pretty(&report)? + "\n"
        } else {
            render_check(&report)
        };
        super::super::print_stdout(&text)?;
        Ok(if report.reachable() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    fn render_check(r: &CheckReport) -> String {
        let line = |what: &str, p: &Probe| {
            let verdict = if p.ok { "yes" } else { "no" };
            match &p.detail {
                Some(d) => format!("{what:<18}{verdict} ({d})\n"),
                None => format!("{what:<18}{verdict}\n"),
            }
        };
        let mode = if r.writable_mode {
            "read-write"
        } else {
            "read-only"
        };
        let mut out = format!("{:<18}{} ({mode})\n", "remote", r.url);
        out += &match r.round_trip_ms {
            Some(ms) => format!("{:<18}{ms:.1} ms\n", "round trip"),
            None => format!("{:<18}unreachable\n", "round trip"),
        };
        out += &line("read", &r.read);
        out += &line("list", &r.list);
        let why = if r.writable_mode {
            "not probed: the read failed"
        } else {
            "not probed: read-only mode"
        };
        let skipped = Probe {
            ok: false,
            detail: Some(why.into()),
        };
        out += &line("write", r.write.as_ref().unwrap_or(&skipped));
        out += &line(
            "conditional write",
            r.conditional_write.as_ref().unwrap_or(&skipped),
        );
        out
    }

    pub(super) fn push(
        global: &GlobalArgs,
        store: &KernelStore,
        args: KernelPushArgs,
    ) -> Result<ExitCode> {
        let remote = required(&args.remote)?;
        let progress = Progress::new(global.quiet);
        let names = if args.names.is_empty() {
            let shareable = |k: &crate::kernel::store::CachedKernel| {
                k.provenance.as_ref().is_some_and(|p| {
                    p.origin != ProvenanceOrigin::Adopted && p.inputs.source.shareable()
                })
            };
            let all: Vec<_> = store
                .list()?
                .into_iter()
                .filter(shareable)
                .map(|k| k.name)
                .collect();
            if all.is_empty() {
                bail!(
                    "no cached kernel may be pushed (none records shareable key inputs): \
                     build one with `cargo ktstr kernel build --source PATH`"
                );
            }
            all
        } else {
            args.names
        };
        let mut reports = Vec::new();
        let mut failed = 0;
        for name in &names {
            if store.lookup(name)?.is_none() {
                eprintln!("error: no cached kernel {name}: see `cargo ktstr kernel list`");
                failed += 1;
                continue;
            }
            match remote.push(store, name, &progress) {
                Ok(r) => reports.push(r),
                Err(e) => {
                    eprintln!("error: pushing kernel {name} failed: {e:#}");
                    failed += 1;
                }
            }
        }
        let text = if args.json {
            serde_json::to_string_pretty(&reports)? + "\n"
        } else {
            reports
                .iter()
                .map(|r| format!("{}\t{}\t{}\n", r.name, r.key, r.manifest))
                .collect()
        };
        super::super::print_stdout(&text)?;
        Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

#[cfg(not(feature = "remote"))]
mod imp {
    use super::*;
    use anyhow::bail;

    /// What to say when a remote is asked of a build without the feature.
    fn missing() -> Result<()> {
        bail!(
            "this cargo-ktstr was built without the remote kernel cache: reinstall it with \
             `cargo install --features remote` (or unset KTSTR_REMOTE_CACHE)"
        )
    }

    pub(super) fn open(args: &RemoteArgs) -> Result<Option<std::convert::Infallible>> {
        let env = std::env::var_os("KTSTR_REMOTE_CACHE").filter(|v| !v.is_empty());
        if args.remote.is_some() || env.is_some() {
            missing()?;
        }
        Ok(None)
    }

    pub(super) fn check(_: &GlobalArgs, _: RemoteCheckArgs) -> Result<ExitCode> {
        missing().map(|()| ExitCode::FAILURE)
    }

    pub(super) fn push(_: &GlobalArgs, _: &KernelStore, _: KernelPushArgs) -> Result<ExitCode> {
        missing().map(|()| ExitCode::FAILURE)
    }
}

/// The remote a build looks in, when one is configured.
pub(crate) fn open(args: &RemoteArgs) -> Result<Option<Box<dyn KernelRemote>>> {
    #[cfg(feature = "remote")]
    {
        Ok(imp::open(args)?.map(|r| Box::new(r) as Box<dyn KernelRemote>))
    }
    #[cfg(not(feature = "remote"))]
    {
        Ok(imp::open(args)?.map(|never| match never {}))
    }
}

pub(crate) fn push(
    global: &GlobalArgs,
    store: &KernelStore,
    args: KernelPushArgs,
) -> Result<ExitCode> {
    imp::push(global, store, args)
}

pub(crate) fn run(global: &GlobalArgs, cmd: RemoteCommand) -> Result<ExitCode> {
    match cmd {
        RemoteCommand::Check(args) => imp::check(global, args),
    }
}
