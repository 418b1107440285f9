//! S3 access: settings from the standard AWS chain, the HTTP client object
//! stores use, and the typed errors that tell a configuration mistake (exit
//! 2, do not retry) from an outage (exit 5, retry).
//!
//! * Timeouts: a connect timeout and an idle (read) timeout, never one for a
//!   whole request, so a large export that downloads slowly but steadily
//!   is read to the end, while a stalled connection fails in bounded time.
//! * S3 refusals that no retry can fix (access denied, no such bucket, a
//!   bucket in another region, a malformed signature) are turned into
//!   [`S3Refused`] at the HTTP layer, with S3's own error code, so they are
//!   classified by type rather than by message text.
//! * Credentials come from `aws-config`, cached and renewed five minutes
//!   before they expire; none found is [`NoCredentials`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::aws::AwsCredential;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
};
use object_store::{ClientOptions, CredentialProvider};
use tokio::sync::Mutex;

use crate::error::{Error, Result, Stage};
use crate::error::{NoCredentials, S3Refused};

/// Credentials are renewed this long before they expire.
const CREDENTIAL_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How long S3 requests may take, from the environment (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection (`SHOPLAKE_S3_CONNECT_TIMEOUT`, default 5).
    pub connect: Duration,
    /// Waiting for the next bytes of a response, headers or body
    /// (`SHOPLAKE_S3_IDLE_TIMEOUT`, default 60). There is no limit on a
    /// whole request: a slow but steady download is fine.
    pub idle: Duration,
    /// Retrying a failed request (connection refused, 5xx, throttling)
    /// before the run gives up with exit 5 (`SHOPLAKE_S3_RETRY_TIMEOUT`, default 30).
    pub retry: Duration,
}

impl Timeouts {
    pub fn from_env() -> Result<Timeouts> {
        let seconds = |name: &str, default: u64| -> Result<Duration> {
            match std::env::var(name) {
                Err(_) => Ok(Duration::from_secs(default)),
                Ok(text) => text
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| Error::usage(Stage::Storage, name, format!("{text:?} is not a number of seconds"))),
            }
        };
        Ok(Timeouts {
            connect: seconds("SHOPLAKE_S3_CONNECT_TIMEOUT", 5)?,
            idle: seconds("SHOPLAKE_S3_IDLE_TIMEOUT", 60)?,
            retry: seconds("SHOPLAKE_S3_RETRY_TIMEOUT", 30)?,
        })
    }
}

/// Builds the HTTP client of an S3 object store.
#[derive(Debug)]
pub struct Connector {
    pub timeouts: Timeouts,
    pub allow_http: bool,
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("shoplake/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.timeouts.connect)
            .read_timeout(self.timeouts.idle)
            // Compression would change Content-Length, which sizes objects.
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .https_only(!self.allow_http)
            .build()
            .map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        Ok(HttpClient::new(Service { client }))
    }
}

/// Sends requests with reqwest and turns S3's permanent refusals into [`S3Refused`].
#[derive(Debug)]
struct Service {
    client: reqwest::Client,
}

#[async_trait]
impl HttpService for Service {
    async fn call(&self, request: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let method = request.method().to_string();
        // Path-style or virtual-hosted: the path names the object (and the bucket, path-style).
        let object = request.uri().path().to_string();
        let bulk_delete =
            method == "POST" && request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "delete"));
        let response = HttpService::call(&self.client, request).await?;
        let status = response.status().as_u16();
        // DeleteObjects answers 200 and lists the keys it refused in its
        // body: a refused key is the same refusal as a refused DELETE.
        if bulk_delete && status == 200 {
            let (parts, body) = response.into_parts();
            let bytes = body.bytes().await?;
            let error = xml_element(&bytes, "Error");
            if let Some(error) = error {
                let code = xml_element(error.as_bytes(), "Code");
                if let Some(reason) = refusal(403, code.as_deref()) {
                    let object = match xml_element(error.as_bytes(), "Key") {
                        Some(key) => format!("{object}/{key}"),
                        None => object,
                    };
                    let message = xml_element(error.as_bytes(), "Message");
                    let method = "DELETE".to_string();
                    let refused = S3Refused { method, object, status: 403, code, message, region: None, reason };
                    return Err(HttpError::new(HttpErrorKind::Unknown, refused));
                }
            }
            return Ok(HttpResponse::from_parts(parts, bytes.into()));
        }
        // Success, conditional-request answers and what a retry can fix
        // (5xx, throttling, request timeouts) go back to object_store as they are.
        if matches!(status, 200..=299 | 304 | 408 | 409 | 412 | 429 | 500..=599) {
            return Ok(response);
        }
        let region = response.headers().get("x-amz-bucket-region").and_then(|v| v.to_str().ok()).map(str::to_string);
        let (parts, body) = response.into_parts();
        // Error bodies are small XML documents.
        let bytes = body.bytes().await?;
        let code = xml_element(&bytes, "Code");
        match refusal(status, code.as_deref()) {
            Some(reason) => Err(HttpError::new(
                HttpErrorKind::Unknown,
                S3Refused { method, object, status, code, message: xml_element(&bytes, "Message"), region, reason },
            )),
            None => Ok(HttpResponse::from_parts(parts, bytes.into())),
        }
    }
}

/// Why S3 refused a request for good, if it did.
fn refusal(status: u16, code: Option<&str>) -> Option<&'static str> {
    match (status, code) {
        (404, Some("NoSuchBucket")) => Some("the bucket does not exist"),
        // Any other 404 is a missing object: the caller decides what that means.
        (404, _) => None,
        (300..=399, _)
        | (_, Some("PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException")) => {
            Some("the bucket is in another region than the one configured (set AWS_REGION)")
        }
        (401 | 403, Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken")) => {
            Some("the credentials are not valid for this store")
        }
        (401 | 403, _) => Some("access denied: the credentials lack a permission shoplake needs"),
        // Timeouts and expired tokens in a 400 are worth a retry; other 400s are not.
        (400, Some("RequestTimeout" | "ExpiredToken" | "TokenRefreshRequired" | "SlowDown")) => None,
        (400, _) => Some("the store refused the request as malformed"),
        _ => None,
    }
}

/// The text of the first `<name>…</name>` element of an S3 error document.
pub(crate) fn xml_element(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(text[start..end].to_string())
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

#[async_trait]
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
        let resolved = self.provider.provide_credentials().await.map_err(|e| {
            let transient = matches!(e, CredentialsError::ProviderTimedOut(_) | CredentialsError::Unhandled(_));
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(NoCredentials { detail: crate::error::flatten(&e), transient }),
            }
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
    fn refusals_are_told_from_what_a_retry_fixes() {
        assert!(refusal(404, Some("NoSuchBucket")).is_some());
        assert!(refusal(404, Some("NoSuchKey")).is_none(), "a missing object is the caller's business");
        assert!(refusal(404, None).is_none());
        assert!(refusal(403, Some("AccessDenied")).is_some());
        assert!(refusal(403, Some("SignatureDoesNotMatch")).is_some());
        assert!(refusal(301, Some("PermanentRedirect")).is_some());
        assert!(refusal(400, Some("AuthorizationHeaderMalformed")).is_some());
        assert!(refusal(400, Some("RequestTimeout")).is_none());
        assert!(refusal(503, Some("SlowDown")).is_none());
    }

    #[test]
    fn error_documents_are_read() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(xml_element(body, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(xml_element(body, "Message").as_deref(), Some("The specified bucket does not exist"));
        assert_eq!(xml_element(b"", "Code"), None);
    }

    #[test]
    fn timeouts_come_from_the_environment() {
        let t = Timeouts::from_env().unwrap();
        assert!(t.connect > Duration::ZERO && t.idle >= t.connect && t.retry > Duration::ZERO);
    }
}
