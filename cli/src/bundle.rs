//! A member principal's client bundle: the partnership CA, its client
//! certificate and key, a token, and where the gateway is — everything a gRPC
//! client needs, in one folder.

use std::path::Path;

use orex_proto::sharing::v1::sharing_service_client::SharingServiceClient;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::CliError;
use crate::error::{read, write};

/// `bundle.toml`: the non-secret facts of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    /// Gateway address, `https://host:port`.
    pub gateway: String,
    /// DNS name in the gateway's certificate.
    pub server_name: String,
    /// The principal's member.
    pub member: String,
    /// The principal's token subject.
    pub subject: String,
    /// Roles its tokens grant.
    pub roles: Vec<String>,
    /// The member's token issuer.
    pub issuer: String,
    /// The gateway's token audience.
    pub audience: String,
}

impl BundleFile {
    /// Reads `dir/bundle.toml`.
    pub fn read(dir: &Path) -> Result<Self, CliError> {
        let path = dir.join("bundle.toml");
        let text = String::from_utf8_lossy(&read(&path)?).into_owned();
        toml::from_str(&text).map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))
    }

    /// Writes `dir/bundle.toml`.
    pub fn write(&self, dir: &Path) -> Result<(), CliError> {
        let text =
            toml::to_string(self).map_err(|e| CliError::Invalid(format!("bundle.toml: {e}")))?;
        write(&dir.join("bundle.toml"), text.as_bytes(), false)
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl BearerToken {
    /// Wraps a raw token.
    pub fn new(token: &str) -> Result<Self, CliError> {
        MetadataValue::try_from(format!("Bearer {}", token.trim()))
            .map(|v| Self(Some(v)))
            .map_err(|_| {
                CliError::Invalid("token contains characters not allowed in metadata".into())
            })
    }
}

impl BearerToken {
    /// Sends no authorization at all (tests of the gateway's refusal).
    pub fn none() -> Self {
        Self(None)
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// An audit client that goes through the gateway with a bundle's identity.
pub type AuditClient = orex_proto::audit::v1::audit_service_client::AuditServiceClient<
    InterceptedService<Channel, BearerToken>,
>;

/// A sharing client that goes through the gateway with a bundle's identity.
pub type SharingClient = SharingServiceClient<InterceptedService<Channel, BearerToken>>;

/// A risk client through the gateway, sending the bundle's token.
pub type RiskClient = orex_proto::risk::v1::risk_service_client::RiskServiceClient<
    InterceptedService<Channel, BearerToken>,
>;

/// An emergency client through the gateway, sending the bundle's token.
pub type EmergencyClient =
    orex_proto::emergency::v1::emergency_service_client::EmergencyServiceClient<
        InterceptedService<Channel, BearerToken>,
    >;

/// An open connection described by a bundle.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The mutual-TLS channel to the gateway.
    pub channel: Channel,
    /// The token interceptor.
    pub token: BearerToken,
}

impl Connection {
    /// Connects to the bundle's gateway with its certificate and token.
    pub async fn open(dir: &Path) -> Result<Self, CliError> {
        Self::open_tuned(dir, |e| e).await
    }

    /// Like [`open`](Self::open), with `tune` applied to the endpoint after
    /// orex's own settings (window sizes in tests, say).
    pub async fn open_tuned(
        dir: &Path,
        tune: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<Self, CliError> {
        let file = BundleFile::read(dir)?;
        let token = String::from_utf8_lossy(&read(&dir.join("token.jwt"))?).into_owned();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&dir.join("ca.pem"))?))
            .identity(Identity::from_pem(
                read(&dir.join("cert.pem"))?,
                read(&dir.join("key.pem"))?,
            ))
            .domain_name(file.server_name.clone());
        let endpoint = Endpoint::from_shared(file.gateway.clone())
            .map_err(|e| CliError::Invalid(format!("bundle gateway address: {e}")))?;
        let channel = tune(orex_kit::transport::dial(endpoint))
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(Self {
            channel,
            token: BearerToken::new(&token)?,
        })
    }

    /// An audit client on this connection.
    pub fn audit(&self) -> AuditClient {
        orex_proto::audit::v1::audit_service_client::AuditServiceClient::with_interceptor(
            self.channel.clone(),
            self.token.clone(),
        )
    }

    /// A sharing client on this connection.
    pub fn sharing(&self) -> SharingClient {
        SharingServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    /// An emergency client on this connection.
    pub fn emergency(&self) -> EmergencyClient {
        orex_proto::emergency::v1::emergency_service_client::EmergencyServiceClient::with_interceptor(
            self.channel.clone(),
            self.token.clone(),
        )
    }

    /// A risk client on this connection.
    pub fn risk(&self) -> RiskClient {
        orex_proto::risk::v1::risk_service_client::RiskServiceClient::with_interceptor(
            self.channel.clone(),
            self.token.clone(),
        )
    }
}
