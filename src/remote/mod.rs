//! A content-addressed remote kernel cache, shared by a fleet of machines:
//! S3, WebDAV, a shared filesystem or the GitHub Actions cache, through
//! opendal. docs/remote-cache.md is the protocol's text; in short:
//!
//! - a kernel's files go up as zstd blobs named by their SHA-256, never
//!   overwritten, then a manifest named by the kernel's key
//!   ([`crate::kernel::key`]), written conditionally where the server can;
//! - a pull checks the manifest ([`format`]), then each blob's size and hash,
//!   decompresses under an exact cap, checks again, and publishes through the
//!   store's rename. Any failure is a miss: the caller builds locally.
//!
//! Every call has a timeout and is retried with jitter; a remote is read-only
//! unless asked otherwise ([`crate::remote::RemoteSpec`]).

mod blob;
pub(crate) mod check;
pub(crate) mod format;
pub(crate) mod transfer;
pub(crate) mod url;

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use opendal::Operator;
use opendal::layers::{RetryEvent, RetryLayer, TimeoutLayer};
use opendal::services;

pub(crate) use url::{RemoteSpec, RemoteUrl};

/// A whole call (a stat, a write of a chunk) may take this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A read or write of one buffer may stall this long.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of a failed call, with jittered backoff between them.
const RETRIES: usize = 3;

/// An open remote: the operator and the runtime that drives it.
#[derive(Debug)]
pub(crate) struct Remote {
    pub spec: RemoteSpec,
    op: Operator,
    rt: tokio::runtime::Runtime,
}

impl Remote {
    /// Opens `spec`'s remote; nothing is sent until the first call.
    pub(crate) fn open(spec: RemoteSpec) -> Result<Remote> {
        install_tls_provider();
        let op = operator(&spec.parsed)
            .with_context(|| format!("failed to set up remote `{}`", spec.url))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the remote cache's I/O runtime")?;
        Ok(Remote { spec, op, rt })
    }

    /// A remote over an operator made elsewhere (tests: opendal's memory).
    #[cfg(test)]
    pub(crate) fn with_operator(spec: RemoteSpec, op: Operator) -> Result<Remote> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the remote cache's I/O runtime")?;
        Ok(Remote {
            spec,
            op: layered(op),
            rt,
        })
    }

    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// reqwest's TLS needs a process-wide crypto provider before any operator
/// (even opendal's memory one builds an HTTP client); another one already
/// installed is as good. ring rather than aws-lc: it builds in a fraction
/// of the time; it lacks post-quantum key exchange, which hash-checked
/// blobs do not rely on.
pub(crate) fn install_tls_provider() {
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn layered(op: Operator) -> Operator {
    op.layer(
        TimeoutLayer::new()
            .with_timeout(CALL_TIMEOUT)
            .with_io_timeout(IO_TIMEOUT),
    )
    .layer(
        RetryLayer::new()
            .with_jitter()
            .with_max_times(RETRIES)
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            // opendal's own notice logs the error's Debug form, which
            // resolves a backtrace where RUST_BACKTRACE is set: seconds a
            // retry in a debug build. A retry is a detail; the miss it may
            // end in is the warning.
            .with_notify(|event: RetryEvent<'_>| {
                tracing::debug!(
                    "retrying {} (attempt {}) in {:.1}s: {}",
                    event.op,
                    event.attempt,
                    event.retry_after.as_secs_f64(),
                    event.err
                );
            }),
    )
}

fn operator(url: &RemoteUrl) -> Result<Operator> {
    let op = match url {
        RemoteUrl::S3 {
            bucket,
            prefix,
            endpoint,
            region,
        } => {
            let region = region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .unwrap_or_else(|| "us-east-1".to_owned());
            // Credentials: the AWS_* variables and profiles, which opendal
            // reads itself.
            let mut b = services::S3::default()
                .bucket(bucket)
                .root(&format!("/{prefix}"))
                .region(&region);
            if let Some(endpoint) = endpoint {
                b = b.endpoint(endpoint);
            }
            // The static keys explicitly: opendal's own loader does not
            // always take them from the environment; profiles and roles
            // are left to it.
            let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
            if let (Some(id), Some(secret)) =
                (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
            {
                b = b.access_key_id(&id).secret_access_key(&secret);
                if let Some(token) = env("AWS_SESSION_TOKEN") {
                    b = b.session_token(&token);
                }
            }
            Operator::new(b)?.finish()
        }
        RemoteUrl::Webdav { endpoint, root } => {
            Operator::new(services::Webdav::default().endpoint(endpoint).root(root))?.finish()
        }
        RemoteUrl::File { root } => {
            // Written to a temporary file under the root, then renamed: a
            // reader on another machine never sees half a blob.
            let tmp = format!("{}/.tmp", root.trim_end_matches('/'));
            Operator::new(services::Fs::default().root(root).atomic_write_dir(&tmp))?.finish()
        }
        RemoteUrl::Gha { prefix } => {
            Operator::new(services::Ghac::default().root(&format!("/{prefix}")))?.finish()
        }
    };
    Ok(layered(op))
}

impl crate::kernel::build::KernelRemote for Remote {
    fn pull(
        &self,
        store: &crate::kernel::store::KernelStore,
        inputs: &crate::kernel::key::KeyInputs,
        name: &str,
        progress: &crate::progress::Progress,
    ) -> Result<Option<std::path::PathBuf>> {
        Ok(Remote::pull(self, store, inputs, name, progress)?.map(|r| r.image))
    }

    fn push(
        &self,
        store: &crate::kernel::store::KernelStore,
        name: &str,
        progress: &crate::progress::Progress,
    ) -> Result<()> {
        Remote::push(self, store, name, progress).map(|_| ())
    }

    fn writable(&self) -> bool {
        self.spec.writable
    }
}
