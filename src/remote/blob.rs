//! A blob: one file of a kernel entry, zstd-compressed, with the SHA-256
//! and size of both sides counted as the bytes pass (the format: [`super`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};

use super::format::FileEntry;
use crate::kernel::key::hex;

/// zstd level. 1: the 6.12 tinyconfig vmlinux (15 MB) packs to 3.5 MB in
/// 0.08 s against level 3's 3.2 MB in 0.13 s (two threads, 2026-12-06, the
/// 2-core EPYC): compression is most of a push, and the bzImage inside is
/// compressed already.
const ZSTD_LEVEL: i32 = 1;
/// zstd's compression threads per blob.
const ZSTD_WORKERS: u32 = 2;

/// Compresses `src` into `blob`; its manifest entry.
pub(super) fn pack_blob(name: &str, src: &Path, blob: &Path) -> Result<FileEntry> {
    let mut input = HashingReader {
        inner: File::open(src).with_context(|| format!("failed to open `{}`", src.display()))?,
        hasher: Sha256::new(),
        count: 0,
    };
    let out = HashingWriter {
        inner: File::create(blob)
            .with_context(|| format!("failed to create `{}`", blob.display()))?,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)
        .context("failed to start a zstd encoder")?;
    // zstd's multithreaded mode: a large file's jobs compress on several
    // cores. Its output depends on the job size, not on the worker count,
    // so every machine makes the same blob (and finds a peer's).
    encoder
        .multithread(ZSTD_WORKERS)
        .context("failed to start zstd's workers")?;
    io::copy(&mut input, &mut encoder)
        .with_context(|| format!("failed to compress `{}`", src.display()))?;
    let out = encoder
        .finish()
        .with_context(|| format!("failed to compress `{}`", src.display()))?;
    Ok(FileEntry {
        name: name.to_owned(),
        size: input.count,
        sha256: hex(&input.hasher.finalize()),
        blob: hex(&out.hasher.finalize()),
        blob_size: out.count,
    })
}

/// Decompresses a verified blob into `dest`, at most `file.size` bytes,
/// and checks the result's size and hash; synced.
pub(super) fn unpack_blob(file: &FileEntry, blob: &Path, dest: &Path) -> Result<()> {
    let input = File::open(blob).with_context(|| format!("failed to open `{}`", blob.display()))?;
    let decoder = zstd::stream::read::Decoder::new(input).context("failed to start zstd")?;
    // One byte past the size: more means the blob holds more than declared.
    let mut limited = decoder.take(file.size + 1);
    let mut out = HashingWriter {
        inner: File::create(dest)
            .with_context(|| format!("failed to create `{}`", dest.display()))?,
        hasher: Sha256::new(),
        count: 0,
    };
    io::copy(&mut limited, &mut out)
        .with_context(|| format!("`{}` does not decompress", file.name))?;
    ensure!(
        out.count == file.size,
        "`{}` decompresses to {} bytes, the manifest says {}",
        file.name,
        out.count,
        file.size
    );
    let got = hex(&out.hasher.finalize());
    ensure!(
        got == file.sha256,
        "`{}` decompresses to SHA-256 {got}, the manifest says {}",
        file.name,
        file.sha256
    );
    out.inner
        .sync_all()
        .with_context(|| format!("failed to sync `{}`", dest.display()))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
