//! TLS for `wss://` (feature `tls`): rustls with the ring provider, trusting the system's roots
//! or a given CA file.

use std::io;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{rustls, TlsConnector};

use super::Dialer;
use crate::error::Error;

/// The TLS handshake for `host` (or the configured domain) over `tcp`.
pub(super) async fn handshake(
    dialer: &Dialer,
    tcp: TcpStream,
    host: &str,
) -> Result<TlsStream<TcpStream>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    match &dialer.ws.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| {
                    dialer.connect_error(io::Error::other(format!(
                        "cannot read CA file {}: {err}",
                        path.display()
                    )))
                })?;
            roots.add_parsable_certificates(certs);
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| dialer.connect_error(io::Error::other(err)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = dialer.ws.domain.as_deref().unwrap_or(host).to_owned();
    let server_name = ServerName::try_from(name.clone()).map_err(|_| {
        dialer.connect_error(io::Error::other(format!(
            "{name:?} is not a valid TLS server name"
        )))
    })?;
    TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|err| dialer.connect_error(err))
}
