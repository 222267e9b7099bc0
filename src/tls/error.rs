//! What can go wrong: building a configuration ([`TlsConfigError`]) and, on a live connection,
//! rustls errors turned into sentences that say what failed (the text of a
//! [`LayerError`](crate::layer::LayerError)).

use std::io;
use std::path::PathBuf;

use rustls::{AlertDescription, CertificateError, Error, InvalidMessage, PeerIncompatible};

/// Why a TLS configuration or a development certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The input is not valid PEM.
    #[error("{what} is not valid PEM: {detail}")]
    BadPem {
        /// The file name, or `"PEM data"` for bytes given in memory.
        what: String,
        /// What the PEM parser objected to.
        detail: String,
    },
    /// No `CERTIFICATE` section was found.
    #[error("no certificate found in {what}")]
    NoCertificate {
        /// The file name, or `"PEM data"`.
        what: String,
    },
    /// No private key section (PKCS#8, PKCS#1 or SEC1) was found.
    #[error("no private key found in {what}")]
    NoPrivateKey {
        /// The file name, or `"PEM data"`.
        what: String,
    },
    /// The private key was found but cannot sign, or does not belong to the certificate.
    #[error("the private key in {what} cannot be used with its certificate: {detail}")]
    BadKey {
        /// The key's file name, or `"PEM data"`.
        what: String,
        /// Why: an unsupported key type, or a key that does not match the certificate.
        detail: String,
    },
    /// A CA certificate could not be used as a trust anchor.
    #[error("the CA certificate in {what} is not usable: {detail}")]
    BadCa {
        /// The file name, or `"PEM data"`.
        what: String,
        /// Why.
        detail: String,
    },
    /// Not a DNS name or an IP address.
    #[error("{0:?} is not a valid server name (expected a DNS name or an IP address)")]
    InvalidServerName(String),
    /// An empty list of protocol versions.
    #[error("at least one TLS protocol version must be enabled")]
    NoProtocolVersions,
    /// rustls refused the configuration.
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] Error),
    /// rcgen could not generate a certificate (e.g. a host name it cannot encode).
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Which end of the connection a description is written from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

impl Side {
    fn peer(self) -> &'static str {
        match self {
            Side::Client => "server",
            Side::Server => "client",
        }
    }
}

/// A sentence naming what failed, from `side`'s point of view.
pub(crate) fn describe(err: &Error, side: Side, handshaking: bool) -> String {
    let peer = side.peer();
    match err {
        Error::InvalidCertificate(e) => {
            format!(
                "the {peer}'s certificate was rejected: {}",
                certificate_problem(e)
            )
        }
        Error::NoCertificatesPresented => match side {
            Side::Server => "the client sent no certificate, but one is required".into(),
            Side::Client => "the server sent no certificate".into(),
        },
        Error::AlertReceived(alert) => alert_received(*alert, peer),
        Error::PeerIncompatible(p) => incompatible(p, peer),
        Error::NoApplicationProtocol => format!(
            "no ALPN protocol in common: none of the protocols the {} offered is accepted",
            if side == Side::Server { "client" } else { "we" }
        ),
        Error::InvalidMessage(m) if handshaking && is_garbage(m) => {
            format!("not a TLS handshake: the {peer} sent bytes that are not a TLS record ({m:?})")
        }
        Error::InvalidMessage(m) => format!("the {peer} sent a malformed TLS message ({m:?})"),
        Error::InappropriateMessage { got_type, .. } => {
            format!("the {peer} sent an unexpected TLS message ({got_type:?})")
        }
        Error::InappropriateHandshakeMessage { got_type, .. } => {
            format!("the {peer} sent an unexpected handshake message ({got_type:?})")
        }
        Error::PeerMisbehaved(m) => format!("the {peer} broke the TLS protocol ({m:?})"),
        Error::DecryptError => {
            format!("a record from the {peer} failed to decrypt (corrupted or forged)")
        }
        Error::PeerSentOversizedRecord => format!("the {peer} sent an oversized TLS record"),
        Error::UnsupportedNameType => "the client asked for an unsupported kind of name".into(),
        other => format!("TLS error: {other}"),
    }
}

/// Bytes that fail the record layer's first checks: what a plaintext protocol or random data
/// sent where a ClientHello should be looks like.
fn is_garbage(m: &InvalidMessage) -> bool {
    matches!(
        m,
        InvalidMessage::InvalidContentType
            | InvalidMessage::UnknownProtocolVersion
            | InvalidMessage::MessageTooLarge
            | InvalidMessage::MessageTooShort
            | InvalidMessage::InvalidEmptyPayload
    )
}

fn certificate_problem(e: &CertificateError) -> String {
    match e {
        CertificateError::UnknownIssuer => {
            "it was issued by an unknown certificate authority (unknown issuer)".into()
        }
        CertificateError::BadSignature => "its signature does not verify (bad certificate)".into(),
        CertificateError::BadEncoding => "it is not a valid certificate (bad encoding)".into(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet".into()
        }
        CertificateError::Revoked => "it has been revoked".into(),
        CertificateError::NotValidForName => "it is not valid for the name asked for".into(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "it is not valid for {:?} (it names {})",
            expected.to_str(),
            if presented.is_empty() {
                "nothing".into()
            } else {
                presented.join(", ")
            }
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "it is not issued for this purpose (extended key usage)".into()
        }
        other => format!("bad certificate ({other:?})"),
    }
}

fn alert_received(alert: AlertDescription, peer: &str) -> String {
    let what = match alert {
        AlertDescription::UnknownCA => "it does not trust our certificate (unknown CA)",
        AlertDescription::BadCertificate => "it rejected our certificate (bad certificate)",
        AlertDescription::UnsupportedCertificate => {
            "it rejected our certificate (unsupported certificate)"
        }
        AlertDescription::CertificateExpired => "it says our certificate has expired",
        AlertDescription::CertificateRevoked => "it says our certificate is revoked",
        AlertDescription::CertificateUnknown => "it rejected our certificate (certificate unknown)",
        AlertDescription::CertificateRequired => {
            "it requires a client certificate and we sent none"
        }
        AlertDescription::ProtocolVersion => "no common protocol version",
        AlertDescription::HandshakeFailure => {
            "handshake failure (no common cipher suite, group or signature scheme)"
        }
        AlertDescription::InsufficientSecurity => "insufficient security",
        AlertDescription::NoApplicationProtocol => "no ALPN protocol in common",
        AlertDescription::UnrecognisedName => "it does not serve the name asked for",
        AlertDescription::DecodeError => "it could not decode our message",
        AlertDescription::DecryptError => "it could not verify our handshake",
        AlertDescription::BadRecordMac => "a record failed to decrypt",
        AlertDescription::IllegalParameter => "illegal parameter",
        AlertDescription::UnexpectedMessage => "unexpected message",
        AlertDescription::AccessDenied => "access denied",
        AlertDescription::InternalError => "its internal error",
        AlertDescription::UserCanceled => "it cancelled the handshake",
        _ => return format!("the {peer} sent a fatal alert: {alert:?}"),
    };
    format!("the {peer} sent a fatal alert: {what}")
}

fn incompatible(p: &PeerIncompatible, peer: &str) -> String {
    match p {
        PeerIncompatible::SupportedVersionsExtensionRequired
        | PeerIncompatible::ServerDoesNotSupportTls12Or13
        | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
        | PeerIncompatible::Tls12NotOffered
        | PeerIncompatible::Tls12NotOfferedOrEnabled => {
            format!("no common protocol version with the {peer} ({p:?})")
        }
        PeerIncompatible::NoCipherSuitesInCommon => {
            format!("no cipher suite in common with the {peer}")
        }
        PeerIncompatible::NoKxGroupsInCommon => {
            format!("no key exchange group in common with the {peer}")
        }
        PeerIncompatible::NoSignatureSchemesInCommon
        | PeerIncompatible::NoCertificateRequestSignatureSchemesInCommon => {
            format!("no signature scheme in common with the {peer}")
        }
        other => format!("the {peer} is incompatible ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_name_what_failed() {
        let unknown = Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(describe(&unknown, Side::Client, true).contains("unknown issuer"));
        let alert = Error::AlertReceived(AlertDescription::UnknownCA);
        assert!(describe(&alert, Side::Server, true).contains("unknown CA"));
        let version = Error::PeerIncompatible(PeerIncompatible::SupportedVersionsExtensionRequired);
        assert!(describe(&version, Side::Server, true).contains("protocol version"));
        assert!(describe(&Error::NoApplicationProtocol, Side::Server, true).contains("ALPN"));
        let garbage = Error::InvalidMessage(InvalidMessage::InvalidContentType);
        assert!(describe(&garbage, Side::Server, true).starts_with("not a TLS handshake"));
        assert!(!describe(&garbage, Side::Server, false).starts_with("not a TLS handshake"));
        assert!(
            describe(&Error::NoCertificatesPresented, Side::Server, true)
                .contains("no certificate")
        );
    }
}
