//! The development PKI: a throwaway partnership CA, workload certificates for
//! the gateway and services, client certificates for demo principals, and an
//! Ed25519 token-issuer key per member. Production PKI is the partnership's
//! own; this exists for `orex up` and the tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::CliError;

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertKey {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The PKCS#8 private key (PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey").finish_non_exhaustive()
    }
}

/// A development certificate authority that can sign leaves.
pub struct DevCa {
    /// The CA certificate (PEM), which every party trusts.
    pub cert_pem: String,
    /// The CA's private key (PKCS#8 PEM); kept in the dev folder (mode 0600)
    /// so more development certificates can be issued later.
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// Generates a new CA (ECDSA P-256).
    pub fn generate(name: &str) -> Result<Self, CliError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "orex development");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA written by [`DevCa::generate`].
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, CliError> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
        })
    }

    /// A workload certificate (`spiffe://orex/workload/<name>`), usable as a
    /// server (DNS `name`, `localhost`, 127.0.0.1, ::1) and as a client.
    pub fn workload(&self, name: &str) -> Result<CertKey, CliError> {
        let mut params = CertificateParams::new(vec![name.to_owned(), "localhost".to_owned()])?;
        params.subject_alt_names.push(uri(&format!(
            "{}workload/{name}",
            orex_kit::identity::SPIFFE_PREFIX
        ))?);
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        self.leaf(params, name)
    }

    /// A member principal's client certificate (`spiffe://orex/member/<M>/<name>`).
    pub fn member_client(&self, member: &str, name: &str) -> Result<CertKey, CliError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names.push(uri(&format!(
            "{}member/{member}/{name}",
            orex_kit::identity::SPIFFE_PREFIX
        ))?);
        self.leaf(params, &format!("{member}/{name}"))
    }

    /// A client certificate with arbitrary URI SANs (tests of bad identities).
    pub fn client_with_uris(&self, uri_sans: &[&str]) -> Result<CertKey, CliError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for u in uri_sans {
            params.subject_alt_names.push(uri(u)?);
        }
        self.leaf(params, "test client")
    }

    fn leaf(&self, mut params: CertificateParams, cn: &str) -> Result<CertKey, CliError> {
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// An Ed25519 token-issuer key pair (PKCS#8 private, SPKI public; both PEM).
#[derive(Clone)]
pub struct IssuerKeys {
    /// Private key, PKCS#8 PEM.
    pub private_pem: String,
    /// Public key, SPKI PEM.
    pub public_pem: String,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys").finish_non_exhaustive()
    }
}

impl IssuerKeys {
    /// Generates a new Ed25519 key pair.
    pub fn generate() -> Result<Self, CliError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        Ok(Self {
            private_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
        })
    }
}

fn uri(s: &str) -> Result<SanType, CliError> {
    Ok(SanType::URI(s.try_into()?))
}
