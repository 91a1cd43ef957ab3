//! Which remote, from `--remote URL` or `$KTSTR_REMOTE_CACHE`, and whether
//! it may be written (`--remote-write` or `KTSTR_REMOTE_CACHE_MODE`).

use anyhow::{Result, bail};
use serde::Serialize;

/// The variable naming the remote.
pub(crate) const REMOTE_ENV: &str = "KTSTR_REMOTE_CACHE";
/// `read-only` (the default) or `read-write`.
pub(crate) const MODE_ENV: &str = "KTSTR_REMOTE_CACHE_MODE";

/// A parsed remote URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "service")]
pub(crate) enum RemoteUrl {
    /// `s3://BUCKET/PREFIX?endpoint=URL&region=REGION`; credentials from
    /// the `AWS_*` variables and profiles.
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
    },
    /// `webdav+http://HOST/PATH` or `webdav+https://…`.
    Webdav { endpoint: String, root: String },
    /// `file:///PATH`: a shared filesystem.
    File { root: String },
    /// `gha://[PREFIX]`: the GitHub Actions cache, from inside a workflow.
    Gha { prefix: String },
}

/// A remote and its mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RemoteSpec {
    /// The URL as given.
    pub url: String,
    #[serde(flatten)]
    pub parsed: RemoteUrl,
    pub writable: bool,
}

impl RemoteSpec {
    /// From the flags, else the environment; `None` when no remote is set.
    pub(crate) fn from_args(url: Option<&str>, write: bool) -> Result<Option<RemoteSpec>> {
        let env_url = std::env::var(REMOTE_ENV).ok();
        let Some(url) = url.or(env_url.as_deref()).filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let writable = write || parse_mode(std::env::var(MODE_ENV).ok().as_deref())?;
        Ok(Some(RemoteSpec {
            url: url.to_owned(),
            parsed: parse_url(url)?,
            writable,
        }))
    }
}

/// Whether a `KTSTR_REMOTE_CACHE_MODE` value allows writes.
pub(crate) fn parse_mode(value: Option<&str>) -> Result<bool> {
    match value.unwrap_or("") {
        "" | "read-only" => Ok(false),
        "read-write" => Ok(true),
        other => bail!("{MODE_ENV}=`{other}` is neither `read-only` nor `read-write`"),
    }
}

/// Parses a remote URL; the error names the forms accepted.
pub(crate) fn parse_url(url: &str) -> Result<RemoteUrl> {
    const FORMS: &str = "use s3://BUCKET/PREFIX?endpoint=URL&region=REGION, \
                         webdav+http://HOST/PATH, file:///PATH or gha://PREFIX";
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("remote `{url}` has no scheme: {FORMS}");
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        bail!(
            "remote `{url}` holds credentials: a URL ends up in logs; give S3 credentials \
             through AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) instead"
        );
    }
    if path.split('/').any(|c| c == ".." || c == ".") {
        bail!("remote `{url}` has a `.` or `..` path component: name the prefix directly");
    }
    let prefix = path.trim_matches('/').to_owned();
    let no_query = |what: &str| -> Result<()> {
        match query {
            Some(q) => bail!("remote `{url}`: {what} takes no query (`?{q}`): {FORMS}"),
            None => Ok(()),
        }
    };
    match scheme {
        "s3" => {
            if authority.is_empty() {
                bail!("remote `{url}` names no bucket: {FORMS}");
            }
            let (mut endpoint, mut region) = (None, None);
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("endpoint", v)) if !v.is_empty() => endpoint = Some(v.to_owned()),
                    Some(("region", v)) if !v.is_empty() => region = Some(v.to_owned()),
                    _ => bail!(
                        "remote `{url}`: unknown or empty parameter `{pair}` (s3 takes \
                         endpoint=URL and region=REGION; credentials come from AWS_*)"
                    ),
                }
            }
            Ok(RemoteUrl::S3 {
                bucket: authority.to_owned(),
                prefix,
                endpoint,
                region,
            })
        }
        "webdav+http" | "webdav+https" => {
            no_query("webdav")?;
            if authority.is_empty() {
                bail!("remote `{url}` names no host: {FORMS}");
            }
            let http = scheme.trim_start_matches("webdav+");
            Ok(RemoteUrl::Webdav {
                endpoint: format!("{http}://{authority}"),
                root: format!("/{prefix}"),
            })
        }
        "file" => {
            no_query("file")?;
            if !authority.is_empty() || prefix.is_empty() {
                bail!("remote `{url}`: a file remote is file:///ABSOLUTE/PATH (three slashes)");
            }
            Ok(RemoteUrl::File {
                root: format!("/{prefix}"),
            })
        }
        "gha" => {
            no_query("gha")?;
            let prefix = [authority, &prefix]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            Ok(RemoteUrl::Gha { prefix })
        }
        other => bail!("remote `{url}`: unknown scheme `{other}`: {FORMS}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_parses() {
        assert_eq!(
            parse_url("s3://b/ci/kernels?endpoint=http://127.0.0.1:9000&region=us-east-1").unwrap(),
            RemoteUrl::S3 {
                bucket: "b".into(),
                prefix: "ci/kernels".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("us-east-1".into()),
            }
        );
        assert_eq!(
            parse_url("webdav+http://127.0.0.1:8080/cache/").unwrap(),
            RemoteUrl::Webdav {
                endpoint: "http://127.0.0.1:8080".into(),
                root: "/cache".into()
            }
        );
        assert_eq!(
            parse_url("file:///srv/ktstr").unwrap(),
            RemoteUrl::File {
                root: "/srv/ktstr".into()
            }
        );
        assert_eq!(
            parse_url("gha://").unwrap(),
            RemoteUrl::Gha { prefix: "".into() }
        );
        assert_eq!(
            parse_url("gha://ktstr/v").unwrap(),
            RemoteUrl::Gha {
                prefix: "ktstr/v".into()
            }
        );
    }

    #[test]
    fn bad_urls_say_what_to_do() {
        for (url, says) in [
            ("s3://key:secret@b/p", "AWS_ACCESS_KEY_ID"),
            ("s3:///p", "no bucket"),
            ("s3://b/p?secret=x", "unknown or empty parameter"),
            ("ftp://h/p", "unknown scheme"),
            ("/srv/cache", "no scheme"),
            ("file://host/p", "three slashes"),
            ("file:///a/../b", "`..`"),
            ("webdav+http://h/p?x=1", "takes no query"),
        ] {
            let err = parse_url(url).unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn read_only_is_the_default() {
        assert!(!parse_mode(None).unwrap());
        assert!(!parse_mode(Some("read-only")).unwrap());
        assert!(parse_mode(Some("read-write")).unwrap());
        assert!(parse_mode(Some("rw")).is_err());
    }
}
