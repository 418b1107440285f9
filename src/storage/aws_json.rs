//! Calls to an AWS service that speaks JSON 1.1 (Glue), with the same
//! region and credential chain as S3 and signed the way object_store signs
//! S3 requests (SigV4). `aws-sdk-glue` would do the same, at a build cost
//! measured at 17 minutes on a 2-core machine for a dozen operations
//! (docs/catalogs.md).
//!
//! The endpoint is the AWS SDKs' own: `AWS_ENDPOINT_URL_<SERVICE>`, else
//! `AWS_ENDPOINT_URL`, else `https://<service>.<region>.amazonaws.com`.

use std::sync::Arc;

use object_store::aws::AwsAuthorizer;
use object_store::CredentialProvider;

use super::s3::AwsChainCredentials;
use super::Storage;
use crate::error::{Error, Kind, Result, Stage};

/// One service's endpoint, signed with the S3 settings' credentials.
pub struct AwsJsonService {
    client: reqwest::Client,
    endpoint: String,
    /// The signing name (`glue`).
    service: &'static str,
    /// The `X-Amz-Target` prefix (`AWSGlue`).
    target_prefix: &'static str,
    region: String,
    credentials: Arc<AwsChainCredentials>,
}

/// The service refused a request: its error type (`EntityNotFoundException`,
/// `AccessDeniedException`, …), told apart by that type, never by its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsFault {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AwsFault {
    /// How the run should end when this refusal stops it: a permission or
    /// a malformed request is the configuration's (exit 2); throttling and
    /// the service's own failures are worth a retry.
    pub fn kind(&self) -> Kind {
        let throttled = ["ThrottlingException", "Throttling", "TooManyRequestsException", "ServiceUnavailable"];
        if self.status >= 500 || self.status == 429 || throttled.contains(&self.code.as_str()) {
            Kind::Unavailable
        } else {
            Kind::Usage
        }
    }
}

impl std::fmt::Display for AwsFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.code, self.status, self.message)
    }
}

/// Why a call did not return a result.
#[derive(Debug)]
pub enum CallError {
    /// The service answered with an error.
    Refused(AwsFault),
    /// No answer: connection, timeout, credentials not available.
    Unreachable(String),
}

impl Storage {
    /// `service` (its signing name and `X-Amz-Target` prefix) at the AWS
    /// SDKs' endpoint for it, in the S3 settings' region.
    pub async fn aws_json_service(&self, service: &'static str, target_prefix: &'static str) -> Result<AwsJsonService> {
        let settings = self.s3.get_or_try_init(|| super::S3Settings::resolve(&self.options)).await?;
        let specific = format!("AWS_ENDPOINT_URL_{}", service.to_uppercase());
        let endpoint = [specific.as_str(), "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
            .map(|v| v.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("https://{service}.{}.amazonaws.com", settings.region));
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err(Error::usage(Stage::Storage, &endpoint, "an AWS endpoint must start with http:// or https://"));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("shoplake/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.timeouts.connect)
            .read_timeout(settings.timeouts.idle)
            .timeout(settings.timeouts.retry)
            .build()
            .map_err(|e| Error::internal(Stage::Storage, &endpoint, e))?;
        Ok(AwsJsonService {
            client,
            endpoint,
            service,
            target_prefix,
            region: settings.region.clone(),
            credentials: settings.credentials.clone(),
        })
    }
}

impl AwsJsonService {
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// `operation` with `input`; its JSON output, or why not.
    pub async fn call(
        &self,
        operation: &str,
        input: &serde_json::Value,
    ) -> std::result::Result<serde_json::Value, CallError> {
        let credential = self.credentials.get_credential().await.map_err(|e| CallError::Unreachable(e.to_string()))?;
        let body = serde_json::to_vec(input).expect("JSON serializes");
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("{}/", self.endpoint))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("{}.{operation}", self.target_prefix))
            .body(object_store::client::HttpRequestBody::from(body.clone()))
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        AwsAuthorizer::new(&credential, self.service, &self.region).authorize(&mut request, None);
        let (parts, _) = request.into_parts();
        let url = parts.uri.to_string();
        let response = self
            .client
            .post(&url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(crate::error::flatten(&e)))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| CallError::Unreachable(crate::error::flatten(&e)))?;
        let output: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(&text).map_err(|_| CallError::Refused(fault_of_text(status, &text)))?
        };
        if (200..300).contains(&status) {
            return Ok(output);
        }
        Err(CallError::Refused(fault_of(status, &output)))
    }
}

/// The error type and message of a JSON 1.1 error body: `__type` (possibly
/// `namespace#Type`) and `message` or `Message`.
fn fault_of(status: u16, body: &serde_json::Value) -> AwsFault {
    let text = |key: &str| body.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let code = text("__type").or_else(|| text("code")).unwrap_or_else(|| format!("HTTP{status}"));
    let code = code.rsplit('#').next().unwrap_or_default().split(':').next().unwrap_or_default().to_string();
    let message = text("message").or_else(|| text("Message")).unwrap_or_default();
    AwsFault { status, code, message }
}

fn fault_of_text(status: u16, text: &str) -> AwsFault {
    let message: String = text.chars().take(300).collect();
    AwsFault { status, code: format!("HTTP{status}"), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_type_is_read_without_its_namespace() {
        let body = serde_json::json!({"__type": "com.amazonaws.glue#EntityNotFoundException", "Message": "no table"});
        let fault = fault_of(400, &body);
        assert_eq!((fault.code.as_str(), fault.message.as_str()), ("EntityNotFoundException", "no table"));
        assert_eq!(fault.kind(), Kind::Usage);
        let throttled = fault_of(400, &serde_json::json!({"__type": "ThrottlingException"}));
        assert_eq!(throttled.kind(), Kind::Unavailable, "throttling is retried, as S3's is");
        assert_eq!(fault_of(503, &serde_json::json!({})).kind(), Kind::Unavailable);
    }
}
