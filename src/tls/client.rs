//! [`ClientTlsConfig`]: which CAs to trust, the name to check, ALPN and a client certificate.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::ServerName;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore};

use super::config::{TlsVersion, Versions, alpn_list, provider};
use super::pem::{PemInput, certified_key};
use super::{TlsConfigError, TlsLayer};
use crate::layer::LayerError;

/// A TLS client configuration: the server name to verify (and send by SNI), the trusted
/// CAs (the system's by default), ALPN protocols and an optional client certificate.
/// TLS 1.2 and 1.3 are enabled.
///
/// Builder methods check their input at once and rebuild the rustls configuration, so
/// [`ClientTlsConfig::layer`] only makes the per-connection state. Cloning is cheap.
///
/// ```
/// use torsion::tls::{ClientTlsConfig, DevCa};
///
/// let ca = DevCa::new("Example CA")?;
/// let cfg = ClientTlsConfig::new("localhost")?
///     .ca_pem(ca.cert_pem().as_bytes())?
///     .alpn(&[b"h2", b"http/1.1"]);
/// assert_eq!(cfg.server_name(), "localhost");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ClientTlsConfig {
    server_name: ServerName<'static>,
    /// `server_name` as given: an IP address has no borrowed text form in rustls.
    name_text: String,
    roots: Arc<RootCertStore>,
    alpn: Vec<Vec<u8>>,
    client_cert: Option<Arc<CertifiedKey>>,
    versions: Versions,
    config: Arc<ClientConfig>,
}

impl fmt::Debug for ClientTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsConfig")
            .field("server_name", &self.server_name)
            .field("roots", &self.roots.len())
            .field("alpn", &self.alpn)
            .field("client_cert", &self.client_cert.is_some())
            .field("versions", &self.versions)
            .finish()
    }
}

/// The system's trusted roots, read once per process: reading and parsing them takes
/// milliseconds, and every client configuration would otherwise repeat it.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            for e in &found.errors {
                tracing::warn!("reading the system's trusted certificates: {e}");
            }
            if added == 0 {
                tracing::warn!(
                    "no trusted root certificates found on this system; \
                     TLS clients using the system roots will reject every server"
                );
            }
            tracing::debug!("{added} system root certificates loaded, {ignored} ignored");
            Arc::new(roots)
        })
        .clone()
}

impl ClientTlsConfig {
    /// Connects to `server_name` (a DNS name, sent by SNI, or an IP address), trusting the
    /// system's root certificates.
    ///
    /// ```
    /// use torsion::tls::ClientTlsConfig;
    /// let cfg = ClientTlsConfig::new("example.com")?;
    /// assert!(ClientTlsConfig::new("not a host name").is_err());
    /// # let _ = cfg;
    /// # Ok::<(), torsion::tls::TlsConfigError>(())
    /// ```
    pub fn new(server_name: &str) -> Result<ClientTlsConfig, TlsConfigError> {
        let name_text = server_name.to_owned();
        let server_name = parse_name(server_name)?;
        let roots = system_roots();
        let versions = Versions::default();
        let config = build(&roots, &[], None, &versions)?;
        Ok(ClientTlsConfig {
            server_name,
            name_text,
            roots,
            alpn: Vec::new(),
            client_cert: None,
            versions,
            config,
        })
    }

    /// The same configuration for another server name (the rest is shared).
    pub fn with_server_name(mut self, server_name: &str) -> Result<Self, TlsConfigError> {
        self.server_name = parse_name(server_name)?;
        self.name_text = server_name.to_owned();
        Ok(self)
    }

    /// The name the server's certificate is checked against.
    pub fn server_name(&self) -> &str {
        &self.name_text
    }

    /// Trusts exactly the CA certificates in `ca_file` (PEM), instead of the system roots.
    pub fn ca_file(self, ca_file: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        let ca = PemInput::file(ca_file.as_ref())?;
        self.set_roots(&ca)
    }

    /// [`ClientTlsConfig::ca_file`] with the CA certificates as PEM text in memory.
    pub fn ca_pem(self, ca_pem: &[u8]) -> Result<Self, TlsConfigError> {
        self.set_roots(&PemInput::memory(ca_pem))
    }

    fn set_roots(mut self, ca: &PemInput) -> Result<Self, TlsConfigError> {
        self.roots = Arc::new(ca.roots()?);
        self.rebuild()
    }

    /// Offers these protocols by ALPN, most preferred first; the server's choice is in
    /// [`LayerInfo::alpn`](crate::layer::LayerInfo::alpn) after the handshake.
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = alpn_list(protocols);
        let mut config = (*self.config).clone();
        config.alpn_protocols = self.alpn.clone();
        self.config = Arc::new(config);
        self
    }

    /// Presents this certificate chain and key (PEM files) when the server asks for one.
    pub fn client_cert(
        self,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsConfigError> {
        let chain = PemInput::file(cert_chain.as_ref())?;
        let key = PemInput::file(key.as_ref())?;
        let ck = certified_key(&chain, &key)?;
        self.set_client_cert(ck)
    }

    /// [`ClientTlsConfig::client_cert`] from PEM text in memory.
    pub fn client_cert_pem(self, cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsConfigError> {
        let ck = certified_key(&PemInput::memory(cert_chain), &PemInput::memory(key))?;
        self.set_client_cert(ck)
    }

    fn set_client_cert(mut self, ck: Arc<CertifiedKey>) -> Result<Self, TlsConfigError> {
        self.client_cert = Some(ck);
        self.rebuild()
    }

    /// Enables only `versions` (both TLS 1.2 and 1.3 by default).
    pub fn versions(mut self, versions: &[TlsVersion]) -> Result<Self, TlsConfigError> {
        self.versions = Versions::new(versions)?;
        self.rebuild()
    }

    fn rebuild(mut self) -> Result<Self, TlsConfigError> {
        self.config = build(
            &self.roots,
            &self.alpn,
            self.client_cert.clone(),
            &self.versions,
        )?;
        Ok(self)
    }

    /// The rustls configuration every connection shares.
    pub fn rustls_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// A client layer for one new connection to [`ClientTlsConfig::server_name`].
    pub fn layer(&self) -> Result<TlsLayer, LayerError> {
        TlsLayer::client(self.config.clone(), self.server_name.clone())
    }
}

fn parse_name(name: &str) -> Result<ServerName<'static>, TlsConfigError> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .map_err(|_| TlsConfigError::InvalidServerName(name.to_owned()))
}

fn build(
    roots: &Arc<RootCertStore>,
    alpn: &[Vec<u8>],
    client_cert: Option<Arc<CertifiedKey>>,
    versions: &Versions,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions.rustls())?
        .with_root_certificates(roots.clone());
    let mut config = match client_cert {
        Some(ck) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(ck))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}
