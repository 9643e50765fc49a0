//! TLS for `wss://` listeners: rustls with the ring provider (feature `tls`). Without the
//! feature a certificate in the configuration is refused at start, naming the feature.

#[cfg(feature = "tls")]
pub(super) use enabled::{load, Acceptor};

#[cfg(not(feature = "tls"))]
pub(super) use disabled::{load, Acceptor};

#[cfg(feature = "tls")]
mod enabled {
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;

    use crate::config::TlsFiles;
    use crate::error::ServerError;

    /// Accepts TLS connections with the configured certificate.
    pub(in crate::transport::ws) type Acceptor = tokio_rustls::TlsAcceptor;

    /// Loads the certificate chain and key, so a bad file fails the start.
    pub(in crate::transport::ws) fn load(files: &TlsFiles) -> Result<Acceptor, ServerError> {
        let tls_error = |path: &std::path::Path, reason: String| ServerError::Tls {
            path: path.to_path_buf(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|err| tls_error(&files.cert, err.to_string()))?;
        if certs.is_empty() {
            return Err(tls_error(&files.cert, "no certificate in the file".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|err| tls_error(&files.key, err.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|err| tls_error(&files.key, err.to_string()))?;
        Ok(Acceptor::from(Arc::new(config)))
    }
}

#[cfg(not(feature = "tls"))]
mod disabled {
    use std::future::Future;
    use std::io;

    use crate::config::TlsFiles;
    use crate::error::ServerError;

    /// A TLS acceptor, of which this build has none.
    pub(in crate::transport::ws) enum Acceptor {}

    impl Acceptor {
        /// Never called: no value of this type exists.
        pub(in crate::transport::ws) fn accept<S: Send>(
            &self,
            _stream: S,
        ) -> impl Future<Output = io::Result<S>> + Send {
            std::future::pending()
        }
    }

    /// Refuses a certificate: this build cannot speak TLS.
    pub(in crate::transport::ws) fn load(_: &TlsFiles) -> Result<Acceptor, ServerError> {
        Err(ServerError::FeatureDisabled {
            what: "a wss:// listener (--tls-cert)",
            feature: "tls",
        })
    }
}
