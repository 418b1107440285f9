//! Where exports and tables live: local paths (the default) and `s3://`
//! URIs. S3 access goes through the standard AWS configuration chain
//! (`aws-config`: environment, profiles, SSO, web identity, instance
//! metadata), with a custom endpoint from `AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL` (LocalStack, MinIO): path-style requests, plain http
//! allowed. Credentials never leave this module except inside signed requests.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use deltalake::{DeltaTable, DeltaTableBuilder};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ClientOptions, CredentialProvider, ObjectStore, RetryConfig};
use tokio::sync::{Mutex, OnceCell};
use url::Url;

use crate::error::{Error, Result, Stage};

/// How long a request may be retried before the run gives up with exit 5.
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Credentials are renewed this long before they expire.
const CREDENTIAL_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A directory or object prefix, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    pub fn parse(text: &str) -> Result<Location> {
        let bad = |why: &str| Error::usage(Stage::CommandLine, text, why);
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("an s3:// URI needs a bucket: s3://bucket/prefix"));
            }
            let prefix = prefix.trim_matches('/').to_string();
            return Ok(Location::S3 { bucket: bucket.to_string(), prefix });
        }
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if text.contains("://") {
            return Err(bad("only local paths and s3:// URIs are supported"));
        }
        if text.is_empty() {
            return Err(bad("the location is empty"));
        }
        Ok(Location::Local(PathBuf::from(text)))
    }

    /// A file or directory inside this one.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(path) => Location::Local(path.join(name)),
            Location::S3 { bucket, prefix } if prefix.is_empty() => {
                Location::S3 { bucket: bucket.clone(), prefix: name.to_string() }
            }
            Location::S3 { bucket, prefix } => {
                Location::S3 { bucket: bucket.clone(), prefix: format!("{prefix}/{name}") }
            }
        }
    }

    /// The same location with `suffix` appended to its last segment.
    pub fn with_suffix(&self, suffix: &str) -> Location {
        match self {
            Location::Local(path) => {
                let mut text = path.as_os_str().to_os_string();
                text.push(suffix);
                Location::Local(PathBuf::from(text))
            }
            Location::S3 { bucket, prefix } => {
                Location::S3 { bucket: bucket.clone(), prefix: format!("{prefix}{suffix}") }
            }
        }
    }

    pub fn url(&self) -> Result<Url> {
        match self {
            Location::Local(path) => {
                let absolute = std::path::absolute(path)
                    .map_err(|e| Error::usage(Stage::Storage, self, format!("not a usable path: {e}")))?;
                Url::from_directory_path(&absolute)
                    .map_err(|()| Error::usage(Stage::Storage, self, "not a usable path"))
            }
            Location::S3 { bucket, prefix } => {
                Url::parse(&format!("s3://{bucket}/{prefix}")).map_err(|e| Error::usage(Stage::Storage, self, e))
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// A loaded table's version as a signed number (the CLI and reports use i64).
pub fn version_of(table: &DeltaTable) -> i64 {
    table.version().map_or(0, |v| v as i64)
}

/// Opens object stores and Delta tables for locations. S3 settings are
/// resolved once, on first use, so local runs never touch AWS configuration.
#[derive(Default)]
pub struct Storage {
    options: S3Options,
    s3: OnceCell<S3Settings>,
}

/// Explicit S3 settings; what is not given comes from the AWS chain and
/// the environment.
#[derive(Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Static credentials (access key id, secret access key).
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials.as_ref().map(|_| "<given>"))
            .finish()
    }
}

struct S3Settings {
    region: String,
    endpoint: Option<String>,
    credentials: Arc<AwsChainCredentials>,
}

impl Storage {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_s3_options(options: S3Options) -> Self {
        Storage { options, s3: OnceCell::new() }
    }

    /// The store holding `location`, and the location's path inside it.
    pub async fn object_store(&self, location: &Location) -> Result<(Arc<dyn ObjectStore>, StorePath)> {
        match location {
            Location::Local(_) => {
                let url = location.url()?;
                let path =
                    StorePath::from_url_path(url.path()).map_err(|e| Error::usage(Stage::Storage, location, e))?;
                Ok((Arc::new(LocalFileSystem::new()), path))
            }
            Location::S3 { bucket, prefix } => {
                let store = self.s3_store(bucket).await?;
                Ok((store, StorePath::from(prefix.as_str())))
            }
        }
    }

    /// A builder for the Delta table at `location` (not loaded yet).
    pub async fn table_builder(&self, location: &Location) -> Result<DeltaTableBuilder> {
        let url = location.url()?;
        let builder =
            DeltaTableBuilder::from_url(url.clone()).map_err(|e| Error::delta(Stage::Storage, location, e))?;
        match location {
            Location::Local(_) => Ok(builder),
            Location::S3 { bucket, .. } => {
                let store = self.s3_store(bucket).await?;
                let root = Url::parse(&format!("s3://{bucket}/")).expect("valid bucket URL");
                Ok(builder.with_storage_backend(store, root))
            }
        }
    }

    /// Makes sure a local table directory exists before a table is created there.
    pub fn prepare_for_writing(&self, location: &Location) -> Result<()> {
        if let Location::Local(path) = location {
            std::fs::create_dir_all(path)
                .map_err(|e| Error::unavailable(Stage::Storage, location, format!("cannot create directory: {e}")))?;
        }
        Ok(())
    }

    /// The Delta table at `location`, loaded at its latest version, or
    /// `None` when nothing has been written there yet.
    pub async fn open_table(&self, location: &Location) -> Result<Option<DeltaTable>> {
        if let Location::Local(path) = location {
            if !path.exists() {
                return Ok(None);
            }
        }
        let mut table =
            self.table_builder(location).await?.build().map_err(|e| Error::delta(Stage::Storage, location, e))?;
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(deltalake::DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(Error::delta(Stage::Storage, location, e)),
        }
    }

    async fn s3_store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let settings = self.s3.get_or_try_init(|| S3Settings::resolve(&self.options)).await?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&settings.region)
            .with_credentials(settings.credentials.clone())
            .with_retry(RetryConfig { retry_timeout: RETRY_TIMEOUT, ..RetryConfig::default() })
            .with_client_options(
                ClientOptions::new().with_connect_timeout(CONNECT_TIMEOUT).with_timeout(REQUEST_TIMEOUT),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| Error::object_store(Stage::Storage, format!("s3://{bucket}"), e))?;
        Ok(Arc::new(store))
    }

    /// The custom S3 endpoint in use, if any (for messages).
    pub fn s3_endpoint(&self) -> Option<String> {
        self.s3.get().and_then(|s| s.endpoint.clone())
    }
}

impl S3Settings {
    async fn resolve(options: &S3Options) -> Result<S3Settings> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| {
                ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                    .iter()
                    .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
            })
            .map(|v| v.trim_end_matches('/').to_string());
        if let Some(endpoint) = &endpoint {
            if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                return Err(Error::usage(
                    Stage::Storage,
                    endpoint,
                    "the S3 endpoint must start with http:// or https://",
                ));
            }
            if endpoint.starts_with("http://") {
                tracing::info!(endpoint = %endpoint, "using a plain-http S3 endpoint");
            }
        }
        let region = match (options.region.clone(), config.region()) {
            (Some(region), _) => region,
            (None, Some(region)) => region.to_string(),
            (None, None) if endpoint.is_some() => "us-east-1".to_string(),
            (None, None) => {
                return Err(Error::usage(
                    Stage::Storage,
                    "AWS configuration",
                    "no AWS region is configured (set AWS_REGION or a profile region)",
                ))
            }
        };
        let provider = match &options.credentials {
            Some((key, secret)) => SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
                key.clone(),
                secret.clone(),
                None,
                None,
                "shoplake options",
            )),
            None => config.credentials_provider().ok_or_else(|| {
                Error::usage(Stage::Storage, "AWS configuration", "no AWS credentials provider is configured")
            })?,
        };
        Ok(S3Settings { region, endpoint, credentials: Arc::new(AwsChainCredentials::new(provider)) })
    }
}

/// Hands credentials from the AWS chain to object_store, caching them and
/// renewing them before they expire, so a long load never signs with
/// expired credentials.
pub struct AwsChainCredentials {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl fmt::Debug for AwsChainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately no key material.
        f.write_str("AwsChainCredentials")
    }
}

impl AwsChainCredentials {
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        AwsChainCredentials { provider, cached: Mutex::new(None) }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for AwsChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|at| at > SystemTime::now() + CREDENTIAL_REFRESH_MARGIN);
            if fresh {
                return Ok(credential.clone());
            }
        }
        let resolved = self.provider.provide_credentials().await.map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: format!("no AWS credentials: {}", crate::error::flatten(&e)).into(),
        })?;
        let credential = Arc::new(AwsCredential {
            key_id: resolved.access_key_id().to_string(),
            secret_key: resolved.secret_access_key().to_string(),
            token: resolved.session_token().map(str::to_string),
        });
        tracing::debug!(expires = ?resolved.expiry(), "resolved AWS credentials");
        *cached = Some((credential.clone(), resolved.expiry()));
        Ok(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("s3://raw/exports/").unwrap(),
            Location::S3 { bucket: "raw".into(), prefix: "exports".into() }
        );
        assert_eq!(Location::parse("s3://raw").unwrap(), Location::S3 { bucket: "raw".into(), prefix: "".into() });
        assert_eq!(Location::parse("./data/raw").unwrap(), Location::Local("./data/raw".into()));
        assert!(Location::parse("gs://bucket/x").is_err());
        assert!(Location::parse("s3:///x").is_err());
    }

    #[test]
    fn joins_and_suffixes() {
        let table = Location::parse("s3://lake/shopify_configuration").unwrap();
        assert_eq!(table.with_suffix("_rejects").to_string(), "s3://lake/shopify_configuration_rejects");
        let raw = Location::parse("s3://raw").unwrap();
        assert_eq!(raw.join("2019-04-01.csv").to_string(), "s3://raw/2019-04-01.csv");
        let local = Location::parse("lake/t").unwrap();
        assert_eq!(local.with_suffix("_rejects").to_string(), "lake/t_rejects");
    }
}
