//! Where lineage events go: a file (one JSON event a line, appended) and an
//! HTTP endpoint (OpenLineage's `POST <url>/api/v1/lineage`, Marquez's API,
//! with an API key as a bearer token). A transport that fails is a warning
//! with the reason and never fails a load; the HTTP one gives up after a
//! few seconds and, once it has failed, is not tried again in the process,
//! so a lineage server that hangs costs one timeout, not one per date.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::LineageConfig;

/// OpenLineage's HTTP endpoint, appended to `--lineage-url`.
pub const ENDPOINT: &str = "/api/v1/lineage";
/// How long one event may take to be accepted.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
pub struct Sender {
    file: Option<PathBuf>,
    http: Option<Http>,
}

#[derive(Debug, Clone)]
struct Http {
    url: String,
    api_key: Option<String>,
    client: reqwest::Client,
    /// Set once a send failed: the rest of the run does without.
    gave_up: Arc<AtomicBool>,
}

impl Sender {
    pub fn new(config: &LineageConfig) -> Sender {
        let http = config.url.as_ref().and_then(|url| {
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .timeout(HTTP_TIMEOUT)
                .build()
                .inspect_err(|e| tracing::warn!("lineage: no HTTP client: {e}"))
                .ok()?;
            let base = url.trim_end_matches('/');
            let url = if base.ends_with(ENDPOINT) { base.to_string() } else { format!("{base}{ENDPOINT}") };
            Some(Http { url, api_key: config.api_key.clone(), client, gave_up: Arc::default() })
        });
        Sender { file: config.file.clone(), http }
    }

    /// Sends one event to every transport; failures are logged.
    pub async fn send(&self, event: &Value) {
        let line = event.to_string();
        if let Some(path) = &self.file {
            if let Err(e) = append(path, &line) {
                tracing::warn!(path = %path.display(), "lineage: could not write the event: {e}");
            }
        }
        if let Some(http) = &self.http {
            if http.gave_up.load(Ordering::Relaxed) {
                return;
            }
            if let Err(reason) = http.post(line).await {
                http.gave_up.store(true, Ordering::Relaxed);
                let url = crate::metrics::redact(&http.url);
                tracing::warn!(%url, "lineage: the event was not accepted ({reason}); no more events go there in this run");
            }
        }
    }
}

impl Http {
    async fn post(&self, body: String) -> Result<(), String> {
        let mut request = self.client.post(&self.url).header("Content-Type", "application/json").body(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| crate::metrics::redact(&crate::error::flatten(&e)))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(format!("{status}: {}", text.chars().take(200).collect::<String>().trim()))
    }
}

/// Appends one line in one write, so concurrent runs never interleave lines.
fn append(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}
