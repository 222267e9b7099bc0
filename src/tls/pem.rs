//! Reading certificates and keys from PEM files or bytes, with errors that name the file.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::TlsConfigError;
use super::config::provider;

/// PEM text and the name to put in errors about it.
pub(crate) struct PemInput {
    pub(crate) bytes: Vec<u8>,
    pub(crate) what: String,
}

impl PemInput {
    pub(crate) fn file(path: &Path) -> Result<PemInput, TlsConfigError> {
        let bytes = std::fs::read(path).map_err(|source| TlsConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(PemInput {
            bytes,
            what: path.display().to_string(),
        })
    }

    pub(crate) fn memory(bytes: &[u8]) -> PemInput {
        PemInput {
            bytes: bytes.to_vec(),
            what: "PEM data".to_owned(),
        }
    }

    fn bad(&self, e: pem::Error) -> TlsConfigError {
        TlsConfigError::BadPem {
            what: self.what.clone(),
            detail: e.to_string(),
        }
    }

    /// Every `CERTIFICATE` section, in order (a chain: leaf first).
    pub(crate) fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.bad(e))?;
        if certs.is_empty() {
            return Err(TlsConfigError::NoCertificate {
                what: self.what.clone(),
            });
        }
        Ok(certs)
    }

    /// The first private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
        PrivateKeyDer::from_pem_slice(&self.bytes).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey {
                what: self.what.clone(),
            },
            e => self.bad(e),
        })
    }

    /// Every certificate, as trust anchors.
    pub(crate) fn roots(&self) -> Result<RootCertStore, TlsConfigError> {
        let mut roots = RootCertStore::empty();
        for cert in self.certificates()? {
            roots.add(cert).map_err(|e| TlsConfigError::BadCa {
                what: self.what.clone(),
                detail: e.to_string(),
            })?;
        }
        Ok(roots)
    }
}

/// A certificate chain and its key, checked to belong together.
pub(crate) fn certified_key(
    chain: &PemInput,
    key: &PemInput,
) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    let certs = chain.certificates()?;
    let der = key.private_key()?;
    let ck =
        CertifiedKey::from_der(certs, der, &provider()).map_err(|e| TlsConfigError::BadKey {
            what: key.what.clone(),
            detail: match e {
                rustls::Error::InconsistentKeys(_) => {
                    format!("it does not match the certificate in {}", chain.what)
                }
                e => e.to_string(),
            },
        })?;
    Ok(Arc::new(ck))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::generate_self_signed;

    #[test]
    fn errors_name_the_input() {
        let (cert, key) = generate_self_signed(&["localhost"]).unwrap();
        let none = PemInput::memory(b"");
        assert!(matches!(
            none.certificates(),
            Err(TlsConfigError::NoCertificate { .. })
        ));
        assert!(matches!(
            none.private_key(),
            Err(TlsConfigError::NoPrivateKey { .. })
        ));
        let bad =
            PemInput::memory(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
        assert!(matches!(
            bad.certificates(),
            Err(TlsConfigError::BadPem { .. })
        ));
        let (_, other_key) = generate_self_signed(&["localhost"]).unwrap();
        let err = certified_key(
            &PemInput::memory(cert.as_bytes()),
            &PemInput::memory(other_key.as_bytes()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        certified_key(
            &PemInput::memory(cert.as_bytes()),
            &PemInput::memory(key.as_bytes()),
        )
        .unwrap();
        let missing = PemInput::file(Path::new("/nonexistent/cert.pem"))
            .err()
            .unwrap();
        assert!(missing.to_string().contains("/nonexistent/cert.pem"));
    }
}
