//! [`ServerTlsConfig`]: certificates (with SNI), ALPN and client certificates for a server.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use super::config::{ClientAuth, TlsVersion, Versions, alpn_list, provider};
use super::pem::{PemInput, certified_key};
use super::{TlsConfigError, TlsLayer};
use crate::layer::LayerError;

/// A TLS server configuration (Twisted's `CertificateOptions` for a server): a default
/// certificate, more chosen by the name the client asks for (SNI), the ALPN protocols offered,
/// and whether clients must present certificates. TLS 1.2 and 1.3 are enabled.
///
/// Each builder method checks its input at once (files are read when the method is called)
/// and rebuilds the rustls configuration, so [`ServerTlsConfig::layer`] only makes the
/// per-connection state. Cloning is cheap; a clone may go to other threads' reactors.
///
/// ```
/// use torsion::tls::{ClientAuth, DevCa, ServerTlsConfig};
///
/// let ca = DevCa::new("Example CA")?;
/// let (cert, key) = ca.issue_server(&["example.com"])?;
/// let (other_cert, other_key) = ca.issue_server(&["other.example"])?;
/// let cfg = ServerTlsConfig::from_pem(cert.as_bytes(), key.as_bytes())?
///     .sni_pem("other.example", other_cert.as_bytes(), other_key.as_bytes())?
///     .alpn(&[b"h2", b"http/1.1"])
///     .client_auth_pem(ClientAuth::Optional, ca.cert_pem().as_bytes())?;
/// let layer = cfg.layer()?;
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ServerTlsConfig {
    certs: Arc<SniResolver>,
    alpn: Vec<Vec<u8>>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    versions: Versions,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsConfig")
            .field("sni_names", &self.certs.by_name.keys().collect::<Vec<_>>())
            .field("alpn", &self.alpn)
            .field("client_auth", &self.verifier.is_some())
            .field("versions", &self.versions)
            .finish()
    }
}

impl ServerTlsConfig {
    /// The default certificate chain (leaf first) and its private key, from PEM files.
    ///
    /// ```no_run
    /// use torsion::tls::ServerTlsConfig;
    /// let cfg = ServerTlsConfig::from_pem_files("cert.pem", "key.pem")?;
    /// # let _ = cfg;
    /// # Ok::<(), torsion::tls::TlsConfigError>(())
    /// ```
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<ServerTlsConfig, TlsConfigError> {
        let chain = PemInput::file(cert_chain.as_ref())?;
        let key = PemInput::file(key.as_ref())?;
        ServerTlsConfig::with_default(certified_key(&chain, &key)?)
    }

    /// [`ServerTlsConfig::from_pem_files`] from PEM text in memory.
    ///
    /// ```
    /// use torsion::tls::{generate_self_signed, ServerTlsConfig};
    /// let (cert, key) = generate_self_signed(&["localhost"])?;
    /// let cfg = ServerTlsConfig::from_pem(cert.as_bytes(), key.as_bytes())?;
    /// # let _ = cfg;
    /// # Ok::<(), torsion::tls::TlsConfigError>(())
    /// ```
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<ServerTlsConfig, TlsConfigError> {
        let ck = certified_key(&PemInput::memory(cert_chain), &PemInput::memory(key))?;
        ServerTlsConfig::with_default(ck)
    }

    fn with_default(default: Arc<CertifiedKey>) -> Result<ServerTlsConfig, TlsConfigError> {
        let certs = Arc::new(SniResolver {
            default,
            by_name: HashMap::new(),
        });
        let versions = Versions::default();
        let config = build(&certs, &[], None, &versions)?;
        Ok(ServerTlsConfig {
            certs,
            alpn: Vec::new(),
            verifier: None,
            versions,
            config,
        })
    }

    /// Serves `cert_chain` and `key` (PEM files) to clients that ask for `name` by SNI; others
    /// get the default certificate. `name` is matched without regard to case; `*.example.com`
    /// matches one label in front of `example.com`.
    ///
    /// ```no_run
    /// use torsion::tls::ServerTlsConfig;
    /// let cfg = ServerTlsConfig::from_pem_files("default.pem", "default.key")?
    ///     .sni("api.example.com", "api.pem", "api.key")?;
    /// # let _ = cfg;
    /// # Ok::<(), torsion::tls::TlsConfigError>(())
    /// ```
    pub fn sni(
        self,
        name: &str,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<ServerTlsConfig, TlsConfigError> {
        let chain = PemInput::file(cert_chain.as_ref())?;
        let key = PemInput::file(key.as_ref())?;
        let ck = certified_key(&chain, &key)?;
        self.add_sni(name, ck)
    }

    /// [`ServerTlsConfig::sni`] from PEM text in memory.
    pub fn sni_pem(
        self,
        name: &str,
        cert_chain: &[u8],
        key: &[u8],
    ) -> Result<ServerTlsConfig, TlsConfigError> {
        let ck = certified_key(&PemInput::memory(cert_chain), &PemInput::memory(key))?;
        self.add_sni(name, ck)
    }

    fn add_sni(
        mut self,
        name: &str,
        ck: Arc<CertifiedKey>,
    ) -> Result<ServerTlsConfig, TlsConfigError> {
        let bare = name.strip_prefix("*.").unwrap_or(name);
        if rustls::pki_types::DnsName::try_from(bare).is_err() {
            return Err(TlsConfigError::InvalidServerName(name.to_owned()));
        }
        let mut certs = (*self.certs).clone();
        certs.by_name.insert(name.to_ascii_lowercase(), ck);
        self.certs = Arc::new(certs);
        self.rebuild()
    }

    /// The protocols offered by ALPN, most preferred first. A client that offers ALPN with
    /// none of them fails the handshake; one that offers no ALPN at all is served without.
    ///
    /// ```
    /// # use torsion::tls::{generate_self_signed, ServerTlsConfig};
    /// # let (cert, key) = generate_self_signed(&["localhost"])?;
    /// let cfg = ServerTlsConfig::from_pem(cert.as_bytes(), key.as_bytes())?
    ///     .alpn(&[b"h2", b"http/1.1"]);
    /// # let _ = cfg;
    /// # Ok::<(), torsion::tls::TlsConfigError>(())
    /// ```
    pub fn alpn(mut self, protocols: &[&[u8]]) -> ServerTlsConfig {
        self.alpn = alpn_list(protocols);
        let mut config = (*self.config).clone();
        config.alpn_protocols = self.alpn.clone();
        self.config = Arc::new(config);
        self
    }

    /// Asks clients for a certificate issued by a CA in `ca_file` (PEM, one or more
    /// certificates), optionally or as a requirement.
    pub fn client_auth(
        self,
        mode: ClientAuth,
        ca_file: impl AsRef<Path>,
    ) -> Result<ServerTlsConfig, TlsConfigError> {
        let ca = PemInput::file(ca_file.as_ref())?;
        self.set_client_auth(mode, &ca)
    }

    /// [`ServerTlsConfig::client_auth`] with the CA certificates as PEM text in memory.
    pub fn client_auth_pem(
        self,
        mode: ClientAuth,
        ca_pem: &[u8],
    ) -> Result<ServerTlsConfig, TlsConfigError> {
        self.set_client_auth(mode, &PemInput::memory(ca_pem))
    }

    fn set_client_auth(
        mut self,
        mode: ClientAuth,
        ca: &PemInput,
    ) -> Result<ServerTlsConfig, TlsConfigError> {
        let roots = Arc::new(ca.roots()?);
        let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider());
        if mode == ClientAuth::Optional {
            builder = builder.allow_unauthenticated();
        }
        let verifier = builder.build().map_err(|e| TlsConfigError::BadCa {
            what: ca.what.clone(),
            detail: e.to_string(),
        })?;
        self.verifier = Some(verifier);
        self.rebuild()
    }

    /// Enables only `versions` (both TLS 1.2 and 1.3 by default).
    pub fn versions(mut self, versions: &[TlsVersion]) -> Result<ServerTlsConfig, TlsConfigError> {
        self.versions = Versions::new(versions)?;
        self.rebuild()
    }

    fn rebuild(mut self) -> Result<ServerTlsConfig, TlsConfigError> {
        self.config = build(
            &self.certs,
            &self.alpn,
            self.verifier.clone(),
            &self.versions,
        )?;
        Ok(self)
    }

    /// The rustls configuration every connection shares.
    pub fn rustls_config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// A server layer for one new connection.
    pub fn layer(&self) -> Result<TlsLayer, LayerError> {
        TlsLayer::server(self.config.clone())
    }
}

fn build(
    certs: &Arc<SniResolver>,
    alpn: &[Vec<u8>],
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    versions: &Versions,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions.rustls())?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs.clone());
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

/// Picks the certificate by the SNI name: exact, then a wildcard one label up, then the
/// default (rustls's own SNI resolver has no default and refuses unknown names).
#[derive(Clone)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SniResolver {
    fn lookup(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = name.filter(|_| !self.by_name.is_empty()) {
            // Clients send SNI in any case; names are stored lower-case.
            let name = name.to_ascii_lowercase();
            if let Some(ck) = self.by_name.get(&name) {
                return ck.clone();
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(ck) = self.by_name.get(&format!("*.{parent}")) {
                    return ck.clone();
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::generate_self_signed;

    fn key(host: &str) -> Arc<CertifiedKey> {
        let (c, k) = generate_self_signed(&[host]).unwrap();
        certified_key(
            &PemInput::memory(c.as_bytes()),
            &PemInput::memory(k.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn sni_lookup_exact_wildcard_default() {
        let (d, a, w) = (key("default"), key("a.example"), key("x.wild.example"));
        let mut by_name = HashMap::new();
        by_name.insert("a.example".to_owned(), a.clone());
        by_name.insert("*.wild.example".to_owned(), w.clone());
        let r = SniResolver {
            default: d.clone(),
            by_name,
        };
        assert!(Arc::ptr_eq(&r.lookup(Some("A.Example")), &a));
        assert!(Arc::ptr_eq(&r.lookup(Some("x.wild.example")), &w));
        assert!(Arc::ptr_eq(&r.lookup(Some("y.x.wild.example")), &d));
        assert!(Arc::ptr_eq(&r.lookup(Some("b.example")), &d));
        assert!(Arc::ptr_eq(&r.lookup(None), &d));
    }

    #[test]
    fn bad_inputs_are_refused() {
        let (c, k) = generate_self_signed(&["localhost"]).unwrap();
        let cfg = ServerTlsConfig::from_pem(c.as_bytes(), k.as_bytes()).unwrap();
        assert!(matches!(
            cfg.clone()
                .sni_pem("not a name", c.as_bytes(), k.as_bytes()),
            Err(TlsConfigError::InvalidServerName(_))
        ));
        assert!(matches!(
            cfg.clone().versions(&[]),
            Err(TlsConfigError::NoProtocolVersions)
        ));
        let err = cfg.client_auth(ClientAuth::Required, "/nonexistent/ca.pem");
        assert!(matches!(err, Err(TlsConfigError::Read { .. })));
    }
}
