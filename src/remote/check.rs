//! `remote check`: what the configured remote can do, and how fast.

use std::time::Instant;

use anyhow::Result;
use opendal::ErrorKind;
use serde::Serialize;

use super::Remote;

/// One probe's outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Probe {
    pub ok: bool,
    /// What went wrong, or a note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What `remote check` found.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckReport {
    pub url: String,
    pub writable_mode: bool,
    /// The first call's round trip, in milliseconds.
    pub round_trip_ms: Option<f64>,
    pub read: Probe,
    pub list: Probe,
    /// Probed only in read-write mode.
    pub write: Option<Probe>,
    pub conditional_write: Option<Probe>,
}

impl CheckReport {
    /// Reachable: the read probe got an answer from the server.
    pub(crate) fn reachable(&self) -> bool {
        self.read.ok
    }
}

fn probe(r: opendal::Result<()>) -> Probe {
    Probe {
        ok: r.is_ok(),
        detail: r.err().map(|e| e.to_string()),
    }
}

impl Remote {
    /// Probes the remote: a read (a manifest that is never there: a miss is
    /// an answer), a list, and in read-write mode a write, a conditional
    /// write over it (which must be refused) and the delete of the probe.
    pub(crate) fn check(&self) -> Result<CheckReport> {
        let op = &self.op;
        let start = Instant::now();
        let read = self.block_on(async {
            match op.stat("v1/kernels/remote-check-probe.json").await {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        });
        let round_trip = read.is_ok().then(|| start.elapsed().as_secs_f64() * 1e3);
        let read = probe(read);
        let list = if op.info().full_capability().list {
            probe(
                self.block_on(async { op.list("v1/").await.map(|_| ()) })
                    .or_else(|e| {
                        // An empty remote has no v1/ yet.
                        if e.kind() == ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    }),
            )
        } else {
            Probe {
                ok: false,
                detail: Some("the service cannot list".into()),
            }
        };
        let (mut write, mut conditional_write) = (None, None);
        if self.spec.writable && read.ok {
            let path = format!("v1/check/{}-{}", std::process::id(), rand::random::<u64>());
            let wrote =
                self.block_on(async { op.write(&path, b"check".to_vec()).await.map(|_| ()) });
            let wrote_ok = wrote.is_ok();
            write = Some(probe(wrote));
            if wrote_ok {
                conditional_write = Some(if op.info().full_capability().write_with_if_not_exists {
                    let again = self.block_on(async {
                        op.write_with(&path, b"again".to_vec())
                            .if_not_exists(true)
                            .await
                    });
                    match again {
                        Err(e) if e.kind() == ErrorKind::ConditionNotMatch => probe(Ok(())),
                        Err(e) => probe(Err(e)),
                        Ok(_) => Probe {
                            ok: false,
                            detail: Some(
                                "the server accepted an if-not-exists write over an existing \
                                 object: it ignores the condition (correctness does not need it)"
                                    .into(),
                            ),
                        },
                    }
                } else {
                    Probe {
                        ok: false,
                        detail: Some("the service has no conditional write".into()),
                    }
                });
                let _ = self.block_on(op.delete(&path));
            }
        }
        Ok(CheckReport {
            url: self.spec.url.clone(),
            writable_mode: self.spec.writable,
            round_trip_ms: round_trip,
            read,
            list,
            write,
            conditional_write,
        })
    }
}
