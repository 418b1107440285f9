//! Where exports and tables live: local paths (the default) and `s3://`
//! URIs, normalised once when parsed. S3 access goes through the standard
//! AWS configuration chain (`aws-config`: environment, profiles, SSO, web
//! identity, instance metadata), with a custom endpoint from
//! `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (LocalStack, MinIO):
//! path-style requests, plain http allowed. Credentials never leave this
//! module except inside signed requests. Before a table on S3 is written,
//! the store is checked once per process to refuse an unconditional `PUT`
//! ([`Storage::check_commits_are_safe`]).

pub mod aws_json;
pub mod log_cache;
pub mod ranged;
pub mod s3;
pub mod versions;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use deltalake::{DeltaTable, DeltaTableBuilder};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig};
use tokio::sync::OnceCell;
use url::Url;

use crate::error::{Error, Kind, Result, Stage};
use s3::{AwsChainCredentials, Timeouts};

pub use shoplake_parse::location::Location;

/// A loaded table's version as a signed number (the CLI and reports use i64).
pub fn version_of(table: &DeltaTable) -> i64 {
    table.version().map_or(0, |v| v as i64)
}

/// Opens object stores and Delta tables for locations. S3 settings are
/// resolved once, on first use, so local runs never touch AWS configuration;
/// one store (one connection pool) per bucket.
#[derive(Default)]
pub struct Storage {
    options: S3Options,
    s3: OnceCell<S3Settings>,
    buckets: std::sync::Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// Set for one command: each bucket's store keeps the Delta logs it
    /// read ([`log_cache`]); these are those stores.
    log_caches: Option<std::sync::Mutex<HashMap<String, Arc<log_cache::LogCache>>>>,
    /// Tables whose store was checked for conditional writes in this process.
    checked: tokio::sync::Mutex<HashSet<Location>>,
}

/// Explicit S3 settings; what is not given comes from the AWS chain and
/// the environment.
#[derive(Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Static credentials (access key id, secret access key).
    pub credentials: Option<(String, String)>,
    /// Server-side encryption of every object shoplake writes.
    pub encryption: Option<Encryption>,
}

/// Server-side encryption requested on every object shoplake writes
/// (`--s3-sse`, `--s3-kms-key-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// SSE-S3 (`AES256`): keys managed by the store.
    Aes256,
    /// SSE-KMS (`aws:kms`) with this key, or the bucket's default KMS key.
    Kms { key_id: Option<String> },
}

impl Encryption {
    /// From the flags: `--s3-sse aws:kms|AES256` and an optional KMS key id.
    pub fn from_flags(sse: Option<&str>, kms_key_id: Option<&str>) -> Result<Option<Encryption>> {
        match (sse, kms_key_id) {
            (None, None) => Ok(None),
            (Some("AES256"), None) => Ok(Some(Encryption::Aes256)),
            (Some("aws:kms"), key) => Ok(Some(Encryption::Kms { key_id: key.map(str::to_string) })),
            (Some("AES256") | None, Some(_)) => {
                Err(Error::usage(Stage::CommandLine, "--s3-kms-key-id", "a KMS key goes with --s3-sse aws:kms"))
            }
            (Some(other), _) => Err(Error::usage(
                Stage::CommandLine,
                "--s3-sse",
                format!("{other:?} is not a server-side encryption: aws:kms or AES256"),
            )),
        }
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials.as_ref().map(|_| "<given>"))
            .field("encryption", &self.encryption)
            .finish()
    }
}

struct S3Settings {
    region: String,
    endpoint: Option<String>,
    credentials: Arc<AwsChainCredentials>,
    timeouts: Timeouts,
}

impl Storage {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_s3_options(options: S3Options) -> Self {
        Storage { options, ..Storage::default() }
    }

    /// The storage of one command: what it learns of a Delta log on S3 is
    /// kept ([`log_cache`]), so a table's log is listed once and each commit
    /// downloaded once however often its stages reload it. Not for a
    /// long-lived handle reading tables other processes write (tests).
    pub fn for_one_command(options: S3Options) -> Self {
        Storage { options, log_caches: Some(std::sync::Mutex::default()), ..Storage::default() }
    }

    /// The store holding `location`, and the location's path inside it.
    pub async fn object_store(&self, location: &Location) -> Result<(Arc<dyn ObjectStore>, StorePath)> {
        match location {
            Location::Local(_) => {
                let url = location_url(location)?;
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
        let url = location_url(location)?;
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
                .map_err(|e| Error::io(Stage::Storage, location, "cannot create directory", e))?;
        }
        Ok(())
    }

    /// Something at `location` that is not a Delta log (a file or folder
    /// name), if any: a table is never created among other files (a typo
    /// pointing `--table` at the exports would otherwise put a table among
    /// the CSVs; Spark refuses such a location too).
    pub async fn foreign_content(&self, location: &Location) -> Result<Option<String>> {
        const LOG: &str = "_delta_log";
        match location {
            Location::Local(path) => {
                let entries = match std::fs::read_dir(path) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(Error::io(Stage::Storage, location, "cannot list the table directory", e)),
                };
                Ok(entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .find(|name| name != LOG))
            }
            Location::S3 { .. } => {
                let (store, prefix) = self.object_store(location).await?;
                let listed = store
                    .list_with_delimiter(Some(&prefix))
                    .await
                    .map_err(|e| Error::object_store(Stage::Storage, location, e))?;
                let names = listed
                    .common_prefixes
                    .iter()
                    .chain(listed.objects.iter().map(|o| &o.location))
                    .filter_map(|p| p.filename().map(str::to_string));
                Ok(names.into_iter().find(|name| name != LOG))
            }
        }
    }

    /// The Delta table at `location`, loaded at its latest version, or
    /// `None` when nothing has been written there yet.
    pub async fn open_table(&self, location: &Location) -> Result<Option<DeltaTable>> {
        if let Location::Local(path) = location {
            if !path.exists() {
                return Ok(None);
            }
            if !path.is_dir() {
                return Err(Error::usage(Stage::Storage, location, "this is a file, not a table directory"));
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

    /// Delta commits on S3 are safe only if the store refuses to overwrite
    /// an existing object on a conditional put (`If-None-Match: *`):
    /// otherwise two writers of the same version would silently lose one
    /// commit. deltalake 1.x has no other locking, so a store that ignores
    /// the condition is refused.
    ///
    /// The check re-puts the table's oldest commit file, with its own bytes,
    /// conditionally: a safe store refuses; one that does not has rewritten
    /// identical bytes. So it leaves nothing behind, needs only the GET and
    /// PUT a writer has anyway (no DELETE), and runs once per table and
    /// process. The table must exist (have a commit) when it is called.
    pub async fn check_commits_are_safe(&self, location: &Location) -> Result<()> {
        if !matches!(location, Location::S3 { .. }) {
            return Ok(());
        }
        let mut checked = self.checked.lock().await;
        if checked.contains(location) {
            return Ok(());
        }
        let (store, prefix) = self.object_store(location).await?;
        check_conditional_writes(store.as_ref(), &prefix, location).await?;
        checked.insert(location.clone());
        Ok(())
    }

    async fn s3_store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let settings = self.s3.get_or_try_init(|| S3Settings::resolve(&self.options)).await?;
        if let Some(store) = self.buckets.lock().expect("bucket stores").get(bucket) {
            return Ok(store.clone());
        }
        let allow_http = settings.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&settings.region)
            .with_credentials(settings.credentials.clone())
            .with_retry(RetryConfig { retry_timeout: settings.timeouts.retry, ..RetryConfig::default() })
            .with_http_connector(s3::Connector { timeouts: settings.timeouts, allow_http });
        if let Some(endpoint) = &settings.endpoint {
            builder =
                builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false).with_allow_http(allow_http);
        }
        match &self.options.encryption {
            None => {}
            Some(Encryption::Aes256) => builder = builder.with_config(sse_key(), "AES256"),
            Some(Encryption::Kms { key_id: Some(key_id) }) => builder = builder.with_sse_kms_encryption(key_id),
            Some(Encryption::Kms { key_id: None }) => builder = builder.with_config(sse_key(), "aws:kms"),
        }
        let s3 = builder.build().map_err(|e| Error::object_store(Stage::Storage, format!("s3://{bucket}"), e))?;
        let store: Arc<dyn ObjectStore> = match &self.log_caches {
            Some(caches) => {
                let cache = Arc::new(log_cache::LogCache::new(Arc::new(s3)));
                caches.lock().expect("log caches").insert(bucket.to_string(), cache.clone());
                cache
            }
            None => Arc::new(s3),
        };
        self.buckets.lock().expect("bucket stores").insert(bucket.to_string(), store.clone());
        Ok(store)
    }

    /// Forgets the listing of the table's log this command kept (not the
    /// commits' bytes, which never change): a load starts from the log as
    /// it is, even the second date of a backfill or an attempt after a
    /// conflict.
    pub fn refresh_log(&self, location: &Location) {
        if let Location::S3 { bucket, prefix } = location {
            let cache = self.log_caches.as_ref().and_then(|c| c.lock().expect("log caches").get(bucket).cloned());
            if let Some(store) = cache {
                store.forget_listing(&StorePath::from(prefix.as_str()).join("_delta_log"));
            }
        }
    }

    /// The custom S3 endpoint in use, if any (for messages).
    pub fn s3_endpoint(&self) -> Option<String> {
        self.s3.get().and_then(|s| s.endpoint.clone())
    }
}

/// object_store's key for the server-side encryption of written objects
/// (its enum of encryption keys is not exported).
fn sse_key() -> object_store::aws::AmazonS3ConfigKey {
    "aws_server_side_encryption".parse().expect("object_store knows its own key")
}

/// The probe behind [`Storage::check_commits_are_safe`], on any store.
pub async fn check_conditional_writes(
    store: &dyn ObjectStore,
    table_prefix: &StorePath,
    location: &Location,
) -> Result<()> {
    let store_error = |e| Error::object_store(Stage::Write, location, e);
    let log = table_prefix.clone().join("_delta_log");
    let oldest = {
        let first = log.clone().join(format!("{:020}.json", 0));
        match store.head(&first).await {
            Ok(_) => first,
            // The first commits' files may have expired: take the oldest left.
            Err(object_store::Error::NotFound { .. }) => {
                use futures::TryStreamExt;
                let mut commits: Vec<StorePath> = store
                    .list(Some(&log))
                    .try_filter_map(|meta| async move {
                        let is_commit = log_cache::is_commit(&meta.location);
                        Ok(is_commit.then_some(meta.location))
                    })
                    .try_collect()
                    .await
                    .map_err(store_error)?;
                commits.sort();
                commits.into_iter().next().ok_or_else(|| {
                    Error::internal(
                        Stage::Write,
                        location,
                        "the table has no commit file to check conditional writes with",
                    )
                })?
            }
            Err(e) => return Err(store_error(e)),
        }
    };
    let bytes = store.get(&oldest).await.map_err(store_error)?.bytes().await.map_err(store_error)?;
    match store.put_opts(&oldest, PutPayload::from(bytes), PutMode::Create.into()).await {
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(()),
        Err(e) => Err(store_error(e)),
        Ok(_) => Err(Error::new(
            Stage::Write,
            Kind::Usage,
            location,
            "this store does not enforce conditional writes (If-None-Match): concurrent commits could overwrite \
             each other, so shoplake will not write here. AWS S3, MinIO and LocalStack enforce them.",
        )),
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
        Ok(S3Settings {
            region,
            endpoint,
            credentials: Arc::new(AwsChainCredentials::new(provider)),
            timeouts: Timeouts::from_env()?,
        })
    }
}

/// The URL deltalake and object_store open `location` by.
fn location_url(location: &Location) -> Result<Url> {
    match location {
        Location::Local(path) => {
            let absolute = std::path::absolute(path)
                .map_err(|e| Error::usage(Stage::Storage, location, format!("not a usable path: {e}")))?;
            Url::from_directory_path(&absolute)
                .map_err(|()| Error::usage(Stage::Storage, location, "not a usable path"))
        }
        Location::S3 { bucket, prefix } => {
            Url::parse(&format!("s3://{bucket}/{prefix}")).map_err(|e| Error::usage(Stage::Storage, location, e))
        }
    }
}
