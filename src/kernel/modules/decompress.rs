//! A module file's bytes as the kernel's `finit_module` takes them
//! uncompressed: `.ko` as it is, `.ko.xz`, `.ko.zst` and `.ko.gz`
//! decompressed here. Doing it on the host is never slower than having the
//! guest kernel do it (under TCG it is much faster, 0.2-0.4 s a boot), and it
//! works for kernels built without `MODULE_DECOMPRESS` (Debian's 6.1, whose
//! modules are plain, and Ubuntu's, whose `.ko.zst` the kernel does decompress).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// How a module file is compressed, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    pub(crate) fn of(path: &Path) -> Option<Compression> {
        let name = path.file_name()?.to_str()?;
        [
            (".ko", Compression::None),
            (".ko.xz", Compression::Xz),
            (".ko.zst", Compression::Zstd),
            (".ko.gz", Compression::Gzip),
        ]
        .into_iter()
        .find_map(|(suffix, c)| name.ends_with(suffix).then_some(c))
    }
}

/// The uncompressed module at `path`.
pub(crate) fn read_module(path: &Path) -> Result<Vec<u8>> {
    let Some(compression) = Compression::of(path) else {
        bail!(
            "`{}` is not a kernel module kmod knows (.ko, .ko.xz, .ko.zst or .ko.gz)",
            path.display()
        );
    };
    let file = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let mut out = Vec::new();
    let read = match compression {
        Compression::None => { file }.read_to_end(&mut out),
        Compression::Xz => xz2::read::XzDecoder::new(file).read_to_end(&mut out),
        Compression::Zstd => zstd::stream::read::Decoder::new(file)?.read_to_end(&mut out),
        Compression::Gzip => flate2::read::GzDecoder::new(file).read_to_end(&mut out),
    };
    read.with_context(|| {
        format!(
            "failed to decompress `{}` ({compression:?})",
            path.display()
        )
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn each_format_comes_back_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let plain = dir.path().join("m.ko");
        std::fs::write(&plain, &body).unwrap();
        let xz = dir.path().join("m.ko.xz");
        let mut enc = xz2::write::XzEncoder::new(File::create(&xz).unwrap(), 1);
        enc.write_all(&body).unwrap();
        enc.finish().unwrap();
        let zst = dir.path().join("m.ko.zst");
        std::fs::write(&zst, zstd::stream::encode_all(&body[..], 1).unwrap()).unwrap();
        let gz = dir.path().join("m.ko.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(&body).unwrap();
        enc.finish().unwrap();
        for path in [&plain, &xz, &zst, &gz] {
            assert_eq!(read_module(path).unwrap(), body, "{}", path.display());
        }
        let err = read_module(&dir.path().join("m.ko.bz2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a kernel module"), "{err}");
        std::fs::write(&xz, b"not xz").unwrap();
        let err = format!("{:#}", read_module(&xz).unwrap_err());
        assert!(
            err.contains("failed to decompress") && err.contains("m.ko.xz"),
            "{err}"
        );
    }
}
