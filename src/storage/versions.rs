//! Object versions of a versioned S3 bucket (issue #27, purge and verify).
//! With versioning on, deleting an object only hides it: its bytes stay as
//! a noncurrent version until that version is deleted by its id. object_store
//! reads one version (`GetOptions::version`) but neither lists versions nor
//! deletes one, so those two requests are made here, signed as object_store
//! signs its own (SigV4, the same credentials, endpoint and HTTP client).
//! Local tables have no versions: [`Storage::object_versions`] is `None`.

use bytes::Bytes;
use object_store::aws::AwsAuthorizer;
use object_store::client::{HttpClient, HttpConnector};
use object_store::{ClientOptions, CredentialProvider};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::s3::{xml_element, Connector};
use super::{Location, Storage};
use crate::error::{Error, Result, Stage};

/// What S3 leaves unencoded in a key or a query value (as object_store encodes).
const KEY_ENCODING: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One version of an object, or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The object's key in the bucket.
    pub key: String,
    pub version_id: String,
    /// The current version (what a plain GET reads).
    pub is_latest: bool,
    /// A delete marker holds no bytes; it hides the versions under it.
    pub delete_marker: bool,
}

/// Lists and deletes the versions of a bucket's objects.
pub struct ObjectVersions {
    client: HttpClient,
    bucket_url: String,
    bucket: String,
    region: String,
    credentials: std::sync::Arc<super::s3::AwsChainCredentials>,
}

impl Storage {
    /// The versions of the objects of `location`'s bucket; `None` on a local disk.
    pub async fn object_versions(&self, location: &Location) -> Result<Option<ObjectVersions>> {
        let Location::S3 { bucket, .. } = location else { return Ok(None) };
        let settings = self.s3.get_or_try_init(|| super::S3Settings::resolve(&self.options)).await?;
        let allow_http = settings.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
        let client = Connector { timeouts: settings.timeouts, allow_http }
            .connect(&ClientOptions::default())
            .map_err(|e| Error::object_store(Stage::Storage, location, e))?;
        let bucket_url = match &settings.endpoint {
            Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{}.amazonaws.com", settings.region),
        };
        Ok(Some(ObjectVersions {
            client,
            bucket_url,
            bucket: bucket.clone(),
            region: settings.region.clone(),
            credentials: settings.credentials.clone(),
        }))
    }
}

impl ObjectVersions {
    /// Every version and delete marker of the objects under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectVersion>> {
        let mut versions = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = format!("versions=&prefix={}", encode(prefix));
            if let Some((key, version)) = &markers {
                query.push_str(&format!("&key-marker={}&version-id-marker={}", encode(key), encode(version)));
            }
            let body = self.send("GET", &format!("{}/?{query}", self.bucket_url)).await?;
            for (element, delete_marker) in [("Version", false), ("DeleteMarker", true)] {
                for entry in xml_elements(&body, element) {
                    let field = |name: &str| xml_element(entry.as_bytes(), name).map(|v| unescape(&v));
                    let (Some(key), Some(version_id)) = (field("Key"), field("VersionId")) else { continue };
                    let is_latest = field("IsLatest").as_deref() == Some("true");
                    versions.push(ObjectVersion { key, version_id, is_latest, delete_marker });
                }
            }
            let text = |name: &str| xml_element(&body, name).map(|v| unescape(&v));
            match (text("IsTruncated").as_deref(), text("NextKeyMarker"), text("NextVersionIdMarker")) {
                (Some("true"), Some(key), Some(version)) => markers = Some((key, version)),
                _ => break,
            }
        }
        Ok(versions)
    }

    /// Deletes one version (or delete marker) for good.
    pub async fn delete(&self, version: &ObjectVersion) -> Result<()> {
        let key: Vec<String> = version.key.split('/').map(encode).collect();
        let url = format!("{}/{}?versionId={}", self.bucket_url, key.join("/"), encode(&version.version_id));
        self.send("DELETE", &url).await.map(|_| ())
    }

    async fn send(&self, method: &str, url: &str) -> Result<Bytes> {
        let subject = format!("s3://{}", self.bucket);
        let failed = |e: String| Error::new(Stage::Storage, crate::error::Kind::Unavailable, &subject, e);
        let credential = self.credentials.get_credential().await.map_err(|e| failed(e.to_string()))?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(url)
            .body(object_store::client::HttpRequestBody::from(Vec::new()))
            .map_err(|e| failed(e.to_string()))?;
        AwsAuthorizer::new(&credential, "s3", &self.region).authorize(&mut request, None);
        // A refusal (access denied, no such bucket) is the configuration's: exit 2, with what is needed.
        let response = self.client.execute(request).await.map_err(|e| {
            let kind = crate::error::kind_of(&e).unwrap_or(crate::error::Kind::Unavailable);
            let mut message = format!("{method} object versions: {}", crate::error::flatten(&e));
            if kind == crate::error::Kind::Usage {
                message.push_str(
                    " (erase --purge and --verify read and delete object versions: s3:ListBucketVersions, \
                     s3:GetObjectVersion, s3:DeleteObjectVersion, as deploy/aws/policies/maintainer.json grants)",
                );
            }
            Error::new(Stage::Storage, kind, &subject, message)
        })?;
        let status = response.status();
        let body = response.into_body().bytes().await.map_err(|e| failed(e.to_string()))?;
        if !status.is_success() {
            let code = xml_element(&body, "Code").unwrap_or_default();
            let message = xml_element(&body, "Message").unwrap_or_default();
            return Err(failed(format!("{method} {url}: {status} {code} {message}")));
        }
        Ok(body)
    }
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, KEY_ENCODING).to_string()
}

/// The contents of every `<name>` element of an XML document, in order.
fn xml_elements(body: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(after[..end].to_string());
        rest = &after[end + close.len()..];
    }
    found
}

/// XML's five escapes, as S3 writes keys.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_listing_is_read() {
        let body = b"<ListVersionsResult><IsTruncated>false</IsTruncated>\
            <Version><Key>t/a=1/x&amp;y.parquet</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest></Version>\
            <DeleteMarker><Key>t/b</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest></DeleteMarker>\
            </ListVersionsResult>";
        let versions = xml_elements(body, "Version");
        assert_eq!(versions.len(), 1);
        assert_eq!(
            xml_element(versions[0].as_bytes(), "Key").map(|k| unescape(&k)).as_deref(),
            Some("t/a=1/x&y.parquet")
        );
        assert_eq!(xml_elements(body, "DeleteMarker").len(), 1);
        assert_eq!(encode("export_date=2026-01-01/part 1.parquet"), "export_date%3D2026-01-01%2Fpart%201.parquet");
    }
}
