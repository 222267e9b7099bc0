//! Certificates for development and tests, made with rcgen: a self-signed certificate
//! (`torsion gen-cert`) and a small certificate authority ([`DevCa`]) that issues server and
//! client certificates, so that tests verify real chains instead of turning verification off.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use super::TlsConfigError;

/// A self-signed certificate for `hosts` (DNS names or IP addresses, all in the subject
/// alternative names; the first is also the common name) and its private key, both PEM:
/// `(cert_pem, key_pem)`. The key is ECDSA P-256.
///
/// A client trusts it by using the certificate itself as its CA file.
///
/// ```
/// use torsion::tls::{generate_self_signed, ClientTlsConfig, ServerTlsConfig};
/// let (cert, key) = generate_self_signed(&["localhost", "127.0.0.1"])?;
/// let server = ServerTlsConfig::from_pem(cert.as_bytes(), key.as_bytes())?;
/// let client = ClientTlsConfig::new("localhost")?.ca_pem(cert.as_bytes())?;
/// # let _ = (server, client);
/// # Ok::<(), torsion::tls::TlsConfigError>(())
/// ```
pub fn generate_self_signed(hosts: &[&str]) -> Result<(String, String), TlsConfigError> {
    let key = KeyPair::generate()?;
    let params = leaf_params(hosts, ExtendedKeyUsagePurpose::ServerAuth)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a self-signed certificate for `hosts` to `dir/cert.pem` and its key to
/// `dir/key.pem` (readable by the owner only), creating `dir` if needed. Returns the two
/// paths. This is `torsion gen-cert --host NAME --out DIR`.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("torsion-doc-gen-cert-{}", std::process::id()));
/// let (cert, key) = torsion::tls::write_self_signed(&dir, &["localhost"])?;
/// let cfg = torsion::tls::ServerTlsConfig::from_pem_files(&cert, &key)?;
/// # let _ = cfg;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), torsion::tls::TlsConfigError>(())
/// ```
pub fn write_self_signed(
    dir: impl AsRef<Path>,
    hosts: &[&str],
) -> Result<(PathBuf, PathBuf), TlsConfigError> {
    let dir = dir.as_ref();
    let (cert, key) = generate_self_signed(hosts)?;
    fs::create_dir_all(dir).map_err(|source| TlsConfigError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    write_file(&cert_path, cert.as_bytes(), 0o644)?;
    write_file(&key_path, key.as_bytes(), 0o600)?;
    Ok((cert_path, key_path))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsConfigError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |source| TlsConfigError::Write {
        path: path.to_owned(),
        source,
    };
    // The mode is given at creation so the key is never readable by others, even briefly;
    // set again in case the file existed with wider permissions.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    f.write_all(data).map_err(fail)
}

fn leaf_params(
    hosts: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, TlsConfigError> {
    let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        hosts.first().copied().unwrap_or("torsion"),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A certificate authority for development and tests: it issues server and client
/// certificates that verify against [`DevCa::cert_pem`], like a real deployment's, so that
/// tests need neither committed keys nor turned-off verification.
///
/// ```
/// use torsion::tls::{ClientAuth, ClientTlsConfig, DevCa, ServerTlsConfig};
///
/// let ca = DevCa::new("Test CA")?;
/// let (server_cert, server_key) = ca.issue_server(&["localhost"])?;
/// let (client_cert, client_key) = ca.issue_client("alice")?;
/// let server = ServerTlsConfig::from_pem(server_cert.as_bytes(), server_key.as_bytes())?
///     .client_auth_pem(ClientAuth::Required, ca.cert_pem().as_bytes())?;
/// let client = ClientTlsConfig::new("localhost")?
///     .ca_pem(ca.cert_pem().as_bytes())?
///     .client_cert_pem(client_cert.as_bytes(), client_key.as_bytes())?;
/// # let _ = (server, client);
/// # Ok::<(), torsion::tls::TlsConfigError>(())
/// ```
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// A new CA with a fresh key, named `common_name`.
    pub fn new(common_name: &str) -> Result<DevCa, TlsConfigError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(DevCa { issuer })
    }

    /// The CA's certificate, PEM: what clients (and servers checking client certificates)
    /// trust.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA's certificate, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// A server certificate for `hosts` (DNS names or IP addresses) and its key, PEM.
    pub fn issue_server(&self, hosts: &[&str]) -> Result<(String, String), TlsConfigError> {
        self.issue(hosts, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for `name` and its key, PEM.
    pub fn issue_client(&self, name: &str) -> Result<(String, String), TlsConfigError> {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        hosts: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(String, String), TlsConfigError> {
        let key = KeyPair::generate()?;
        let cert = leaf_params(hosts, usage)?.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_self_signed_makes_a_private_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("torsion-gen-cert-{}", std::process::id()));
        let (cert, key) = write_self_signed(&dir, &["localhost", "127.0.0.1"]).unwrap();
        assert_eq!(cert, dir.join("cert.pem"));
        let mode = fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            fs::read_to_string(&cert)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_host_names_are_errors() {
        assert!(generate_self_signed(&["b\u{e4}d.example"]).is_err());
    }
}
