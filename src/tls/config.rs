//! What server and client configurations share: the crypto provider, protocol versions and
//! client-certificate modes.

use std::sync::{Arc, OnceLock};

use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;

use super::TlsConfigError;

/// The ring provider, built once. Configurations name it explicitly instead of relying on a
/// process-wide default, which another crate in the process could have set differently.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A TLS protocol version, for restricting what a configuration accepts (both are enabled by
/// default).
///
/// ```
/// use torsion::tls::{ClientTlsConfig, TlsVersion};
/// let cfg = ClientTlsConfig::new("example.com")?.versions(&[TlsVersion::Tls13])?;
/// # let _ = cfg;
/// # Ok::<(), torsion::tls::TlsConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl TlsVersion {
    /// The name [`LayerInfo::version`](crate::layer::LayerInfo::version) uses:
    /// `"TLSv1.2"` or `"TLSv1.3"`.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// Whether a server asks clients for a certificate.
///
/// ```
/// use torsion::tls::ClientAuth;
/// assert_ne!(ClientAuth::Optional, ClientAuth::Required);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Ask; accept clients without one, verify those that send one.
    Optional,
    /// Ask, and end the handshake of a client that sends none or a bad one.
    Required,
}

/// The versions enabled, newest first, as rustls wants them.
#[derive(Clone, Debug)]
pub(crate) struct Versions(Vec<TlsVersion>);

impl Default for Versions {
    fn default() -> Self {
        Versions(vec![TlsVersion::Tls13, TlsVersion::Tls12])
    }
}

impl Versions {
    pub(crate) fn new(versions: &[TlsVersion]) -> Result<Versions, TlsConfigError> {
        if versions.is_empty() {
            return Err(TlsConfigError::NoProtocolVersions);
        }
        let mut v = Vec::with_capacity(2);
        for want in [TlsVersion::Tls13, TlsVersion::Tls12] {
            if versions.contains(&want) {
                v.push(want);
            }
        }
        Ok(Versions(v))
    }

    pub(crate) fn rustls(&self) -> Vec<&'static SupportedProtocolVersion> {
        self.0.iter().map(|v| v.rustls()).collect()
    }
}

pub(crate) fn alpn_list(protocols: &[&[u8]]) -> Vec<Vec<u8>> {
    protocols.iter().map(|p| p.to_vec()).collect()
}
