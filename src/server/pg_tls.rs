//! TLS to PostgreSQL through rustls, as the database URL's `sslmode` asks (libpq's meanings):
//! `disable` plain; `prefer` and `require` encrypted, the server's certificate checked against
//! `sslrootcert` when one is named and taken as it is otherwise; `verify-ca` checked against
//! `sslrootcert` (or this machine's authorities); `verify-full` that and the host name too.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, pem::PemObject as _};

use crate::sync::tls::{Policy, Verifier};

use super::db::DbError;

/// What the URL's `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Encrypted; the certificate checked only when a root certificate is named.
    Require,
    /// The chain checked, not the host name.
    VerifyCa,
    /// The chain and the host name checked.
    VerifyFull,
}

/// `url` naming database `name` instead of its own, its parameters kept (`postgres://u@h/db?q`
/// -> `postgres://u@h/name?q`): a sibling database on the same server, reached the same way.
pub fn with_database(url: &str, name: &str) -> Result<String, DbError> {
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (url, String::new()),
    };
    let (prefix, _) = path
        .rsplit_once('/')
        .filter(|(prefix, _)| prefix.contains("//"))
        .ok_or_else(|| DbError::Setup(format!("{url}: expected postgres://HOST/DATABASE")))?;
    Ok(format!("{prefix}/{name}{query}"))
}

/// The URL without the TLS parameters tokio-postgres does not know, the mode, and the root
/// certificate file named by `sslrootcert`.
pub fn split_url(url: &str) -> Result<(String, SslMode, Option<String>), DbError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = SslMode::Disable;
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = match value {
                    "disable" | "allow" => SslMode::Disable,
                    "prefer" | "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(DbError::Setup(format!(
                            "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                        )));
                    }
                }
            }
            "sslrootcert" => root = Some(value.to_owned()),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, mode, root))
}

/// The rustls configuration for `mode`, or `None` for a plain connection.
pub fn client_config(
    mode: SslMode,
    root: Option<&str>,
) -> Result<Option<rustls::ClientConfig>, DbError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = || -> Result<Arc<rustls::RootCertStore>, DbError> {
        let mut store = rustls::RootCertStore::empty();
        match root {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| DbError::Setup(format!("sslrootcert {path}: {e}")))?
                {
                    let cert =
                        cert.map_err(|e| DbError::Setup(format!("sslrootcert {path}: {e}")))?;
                    store
                        .add(cert)
                        .map_err(|e| DbError::Setup(format!("sslrootcert {path}: {e}")))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = store.add(cert);
                }
            }
        }
        Ok(Arc::new(store))
    };
    // libpq's `require` checks the certificate only when a root is named; then it is verify-ca.
    let with = |policy| Arc::new(Verifier::new(policy, Arc::clone(&provider)));
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, root) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::Require, None) => with(Policy::AnyCertificate),
        (SslMode::Require | SslMode::VerifyCa, _) => {
            with(Policy::ChainOnly(web_pki(roots()?, &provider)?))
        }
        (SslMode::VerifyFull, _) => web_pki(roots()?, &provider)?,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Setup(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(config))
}

fn web_pki(
    roots: Arc<rustls::RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, DbError> {
    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(provider))
        .build()
        .map_err(|e| DbError::Setup(format!("TLS roots: {e}")))
}

/// A connection for `url` honouring its `sslmode` (tests and tools; the server pools its own).
/// The connection runs on its own task.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, DbError> {
    let (plain, mode, root) = split_url(url)?;
    let mut config: tokio_postgres::Config = plain
        .parse()
        .map_err(|e| DbError::Setup(format!("bad PostgreSQL URL: {e}")))?;
    let unavailable = |e: tokio_postgres::Error| DbError::Unavailable(with_causes(&e));
    match client_config(mode, root.as_deref())? {
        Some(tls) => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
            let (client, connection) = config.connect(tls).await.map_err(unavailable)?;
            tokio::spawn(connection);
            Ok(client)
        }
        None => {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(unavailable)?;
            tokio::spawn(connection);
            Ok(client)
        }
    }
}

/// An error with every cause behind it ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer").
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        // A wrapper often ends with its cause's words ("...: db error", then "db error").
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

/// `url` with its password, if it has one, shown as `***`: for messages and logs.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_is_never_shown() {
        for (url, shown) in [
            (
                "postgres://tillpass:s3cr:et@db.example:5432/tillpass?sslmode=require",
                "postgres://tillpass:***@db.example:5432/tillpass?sslmode=require",
            ),
            (
                "postgres://tillpass@db/tillpass",
                "postgres://tillpass@db/tillpass",
            ),
            ("postgres://db/x?user=a", "postgres://db/x?user=a"),
            (
                "sqlite:/var/lib/tillpass/server.sqlite3",
                "sqlite:/var/lib/tillpass/server.sqlite3",
            ),
        ] {
            assert_eq!(super::without_password(url), shown);
        }
    }

    #[test]
    fn a_sibling_database_keeps_the_parameters() {
        let url = "postgres://u:p@h:5432/postgres?sslmode=verify-full&sslrootcert=/ca.pem";
        assert_eq!(
            super::with_database(url, "other").expect("a URL"),
            "postgres://u:p@h:5432/other?sslmode=verify-full&sslrootcert=/ca.pem"
        );
        assert_eq!(
            super::with_database("postgres://h/db", "x").expect("a URL"),
            "postgres://h/x"
        );
        assert!(super::with_database("postgres:", "x").is_err());
    }

    use super::*;

    #[test]
    fn the_tls_parameters_leave_the_url_and_name_the_mode() {
        let (url, mode, root) = split_url(
            "postgres://u:p@db.example/tillpass?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .expect("url");
        assert_eq!(url, "postgres://u:p@db.example/tillpass?application_name=x");
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));
        let (url, mode, _) = split_url("postgres://u@h/db").expect("url");
        assert_eq!(
            (url.as_str(), mode),
            ("postgres://u@h/db", SslMode::Disable)
        );
        assert!(split_url("postgres://u@h/db?sslmode=maybe").is_err());
    }
}
