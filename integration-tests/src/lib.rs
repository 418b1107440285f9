//! The harness of shoplake's S3 integration tests: one set of scenarios
//! (`scenarios`), two backends (LocalStack, MinIO).
//!
//! Where the services run is decided per backend:
//! * `SHOPLAKE_IT_<BACKEND>_ENDPOINT` (+ `_ACCESS_KEY`, `_SECRET_KEY`) set:
//!   use that server. `make integration-test` starts both as host processes
//!   (`localstack/services.sh`) and sets these.
//! * otherwise, a Docker daemon reachable: start the backend's image with
//!   testcontainers for the test, and remove it afterwards.
//! * otherwise the test fails, saying how to provide a server.
//!
//! Every test works under its own prefix (`s3://raw/<prefix>/`,
//! `s3://lake/<prefix>/`) and runs the real `shoplake` binary, then reads
//! the table back and compares it with the same exports loaded into a local
//! table (the local path is covered by the CLI tests).

pub mod chaos;
pub mod erasure;
pub mod hardening;
pub mod overlap;
pub mod place;
pub mod proxy;
pub mod race;
pub mod scenarios;
pub mod tables;

use std::path::PathBuf;
use std::process::{Command, Output};

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use shoplake::storage::{Location, S3Options, Storage};
use shoplake::testing::TableSnapshot;
use testcontainers::core::{ContainerPort, ExecCommand, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// The MinIO image the Docker path runs, pinned (never `latest`). MinIO
/// publishes its images on quay.io (Docker Hub's `minio/minio` is no longer updated).
pub const MINIO_IMAGE: &str = "quay.io/minio/minio";
pub const MINIO_IMAGE_TAG: &str = "RELEASE.2025-04-22T22-12-26Z";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    LocalStack,
    Minio,
}

impl Backend {
    fn env_prefix(self) -> &'static str {
        match self {
            Backend::LocalStack => "SHOPLAKE_IT_LOCALSTACK",
            Backend::Minio => "SHOPLAKE_IT_MINIO",
        }
    }
}

/// A reachable S3 server with the buckets `raw` and `lake`.
pub struct Service {
    pub backend: Backend,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    _container: Option<ContainerAsync<GenericImage>>,
}

impl Service {
    pub async fn start(backend: Backend) -> Service {
        let var = |suffix: &str| std::env::var(format!("{}_{suffix}", backend.env_prefix())).ok();
        let region = std::env::var("SHOPLAKE_IT_REGION").unwrap_or_else(|_| "us-east-1".into());
        if let Some(endpoint) = var("ENDPOINT") {
            return Service {
                backend,
                endpoint,
                access_key: var("ACCESS_KEY").unwrap_or_else(|| "test".into()),
                secret_key: var("SECRET_KEY").unwrap_or_else(|| "test".into()),
                region,
                _container: None,
            };
        }
        if docker_available() {
            return Self::start_container(backend, region).await;
        }
        panic!(
            "no {backend:?} server: set {}_ENDPOINT (run `make integration-test`, which starts one on this machine) \
             or make a Docker daemon reachable for testcontainers",
            backend.env_prefix()
        );
    }

    async fn start_container(backend: Backend, region: String) -> Service {
        let (access_key, secret_key) = ("shoplake".to_string(), format!("secret-{}", uuid::Uuid::new_v4().simple()));
        let (container, port) = match backend {
            Backend::LocalStack => {
                let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../localstack/init/ready.d");
                let hooks = hooks.canonicalize().expect("localstack/init/ready.d exists");
                let container = GenericImage::new("localstack/localstack", "4.12")
                    .with_exposed_port(ContainerPort::Tcp(4566))
                    .with_wait_for(WaitFor::message_on_stdout("Ready."))
                    .with_env_var("SERVICES", "s3,sts")
                    .with_mount(Mount::bind_mount(hooks.to_string_lossy(), "/etc/localstack/init/ready.d"))
                    .start()
                    .await
                    .expect("start localstack/localstack");
                (container, 4566)
            }
            Backend::Minio => {
                let container = GenericImage::new(MINIO_IMAGE, MINIO_IMAGE_TAG)
                    .with_exposed_port(ContainerPort::Tcp(9000))
                    .with_wait_for(WaitFor::message_on_stdout("API:"))
                    .with_env_var("MINIO_ROOT_USER", &access_key)
                    .with_env_var("MINIO_ROOT_PASSWORD", &secret_key)
                    .with_env_var("MINIO_SITE_REGION", "us-east-1")
                    .with_cmd(["server", "/data"])
                    .start()
                    .await
                    .expect("start minio/minio");
                let make_buckets = format!(
                    "mc alias set local http://127.0.0.1:9000 {access_key} {secret_key} && mc mb --ignore-existing local/raw local/lake local/lake-versioned && mc version enable local/lake-versioned"
                );
                let mut made = container.exec(ExecCommand::new(["sh", "-c", &make_buckets])).await.expect("run mc");
                let code = made.exit_code().await.expect("mc's exit code");
                if code != Some(0) {
                    let output = String::from_utf8_lossy(&made.stderr_to_vec().await.unwrap_or_default()).into_owned();
                    panic!("creating the buckets with mc failed ({code:?}): {output}");
                }
                (container, 9000)
            }
        };
        let host_port = container.get_host_port_ipv4(port).await.expect("mapped port");
        let service = Service {
            backend,
            endpoint: format!("http://127.0.0.1:{host_port}"),
            access_key,
            secret_key,
            region,
            _container: Some(container),
        };
        service.wait_for_buckets().await;
        service
    }

    /// The LocalStack ready hook creates the buckets shortly after "Ready.":
    /// wait until both can be listed (a HEAD of a missing key answers 404
    /// whether or not the bucket exists, so it proves nothing).
    async fn wait_for_buckets(&self) {
        let storage = self.storage();
        let mut last = String::new();
        for _ in 0..120 {
            let mut ready = true;
            for bucket in ["s3://raw", "s3://lake"] {
                let (store, _) = storage.object_store(&Location::parse(bucket).unwrap()).await.unwrap();
                if let Err(e) = store.list_with_delimiter(None).await {
                    last = format!("{bucket}: {e}");
                    ready = false;
                }
            }
            if ready {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        panic!("the buckets never appeared on {}: {last}", self.endpoint);
    }

    pub fn storage(&self) -> Storage {
        Storage::with_s3_options(S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            credentials: Some((self.access_key.clone(), self.secret_key.clone())),
            encryption: None,
        })
    }

    /// Deletes what a test left under `prefix` in every bucket, once it has
    /// passed: one run writes gigabytes (a race alone ~0.6 GB), and MinIO
    /// refuses every write once its drive is nearly full, which failed an
    /// unrelated test after enough runs. A failing test keeps its objects to
    /// be looked at (`services.sh start` wipes the servers' data).
    fn remove_prefix_if_passed(&self, prefix: &str) {
        if std::thread::panicking() || prefix.is_empty() {
            return;
        }
        let storage = self.storage();
        let prefix = prefix.to_owned();
        // Drop may run inside the test's runtime, which must not be blocked
        // on: a thread of its own with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                for bucket in ["raw", "lake", "lake-versioned"] {
                    let location = Location::parse(&format!("s3://{bucket}/{prefix}/")).expect("test prefix");
                    let Ok((store, path)) = storage.object_store(&location).await else { continue };
                    let listed = store.list(Some(&path)).map_ok(|meta| meta.location).boxed();
                    let deleted: Vec<_> = store.delete_stream(listed).collect().await;
                    if let Some(Err(e)) = deleted.into_iter().find(Result::is_err) {
                        eprintln!("note: objects left under s3://{bucket}/{prefix}/: {e}");
                    }
                }
            })
        });
        let _ = cleanup.join();
    }
}

fn docker_available() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || std::path::Path::new("/var/run/docker.sock").exists()
}

/// The `shoplake` binary: `SHOPLAKE_BIN`, or the one built beside this test.
pub fn shoplake_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOPLAKE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/shoplake
    let binary = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("shoplake");
    assert!(binary.exists(), "{} is missing: run `cargo build --bin shoplake` first", binary.display());
    binary
}

/// One test's world: its prefix on the S3 server, and a local directory
/// where the same exports are loaded as the reference.
pub struct Case {
    pub service: Service,
    pub storage: Storage,
    pub prefix: String,
    pub local: tempfile::TempDir,
}

impl Drop for Case {
    fn drop(&mut self) {
        self.service.remove_prefix_if_passed(&self.prefix);
    }
}

impl Case {
    pub async fn new(backend: Backend, name: &str) -> Case {
        let service = Service::start(backend).await;
        let storage = service.storage();
        let prefix = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Case { service, storage, prefix, local: tempfile::tempdir().expect("temp dir") }
    }

    pub fn source(&self) -> String {
        format!("s3://raw/{}", self.prefix)
    }

    pub fn table(&self) -> String {
        format!("s3://lake/{}/shopify_configuration", self.prefix)
    }

    pub fn local_source(&self) -> PathBuf {
        self.local.path().join("raw")
    }

    pub fn local_table(&self) -> PathBuf {
        self.local.path().join("lake/shopify_configuration")
    }

    /// `shoplake` against the S3 server, configured only through the
    /// standard AWS environment variables.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(shoplake_binary());
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.local.path())
            .env("AWS_ENDPOINT_URL", &self.service.endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.service.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.service.secret_key)
            .env("AWS_REGION", &self.service.region)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SHOPLAKE_SOURCE", self.source())
            .env("SHOPLAKE_TABLE", self.table())
            .env("RUST_LOG", "warn");
        command
    }

    pub fn shoplake(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run shoplake")
    }

    /// `shoplake` on the local reference table.
    pub fn local_shoplake(&self, args: &[&str]) -> Output {
        Command::new(shoplake_binary())
            .args(args)
            .env("SHOPLAKE_SOURCE", self.local_source())
            .env("SHOPLAKE_TABLE", self.local_table())
            .env("RUST_LOG", "warn")
            .output()
            .expect("run shoplake")
    }

    /// Ingests `date` from S3 into the S3 table: the exit code and the JSON report.
    pub fn ingest(&self, date: &str) -> (i32, serde_json::Value) {
        report_of(self.shoplake(&["ingest", "--date", date, "--format", "json"]))
    }

    /// Ingests `date` into the local reference table.
    pub fn local_ingest(&self, date: &str) -> (i32, serde_json::Value) {
        report_of(self.local_shoplake(&["ingest", "--date", date, "--format", "json"]))
    }

    /// Generates the same exports on S3 and locally.
    pub fn generate(&self, from: &str, to: &str, rows: u64, extra: &[&str]) {
        let rows = rows.to_string();
        let source = self.source();
        let local = self.local_source();
        let args = ["generate", "--from", from, "--to", to, "--rows", &rows, "--out"];
        for (out, on_s3) in [(source.as_str(), true), (local.to_str().unwrap(), false)] {
            let mut full = args.to_vec();
            full.push(out);
            full.extend_from_slice(extra);
            let output = if on_s3 { self.shoplake(&full) } else { self.local_shoplake(&full) };
            assert!(output.status.success(), "generate failed: {}", String::from_utf8_lossy(&output.stderr));
        }
    }

    /// Writes an export both on S3 and locally.
    pub async fn put_export(&self, date: &str, bytes: Vec<u8>) {
        let name = format!("{date}.csv");
        std::fs::create_dir_all(self.local_source()).unwrap();
        std::fs::write(self.local_source().join(&name), &bytes).unwrap();
        let (store, path) =
            self.storage.object_store(&Location::parse(&format!("{}/{name}", self.source())).unwrap()).await.unwrap();
        store.put(&path, PutPayload::from(bytes)).await.expect("upload export");
    }

    /// An export as stored on S3.
    pub async fn get_export(&self, date: &str) -> Vec<u8> {
        let location = Location::parse(&format!("{}/{date}.csv", self.source())).unwrap();
        let (store, path) = self.storage.object_store(&location).await.unwrap();
        store.get(&path).await.unwrap().bytes().await.unwrap().to_vec()
    }

    pub async fn snapshot(&self) -> TableSnapshot {
        self.snapshot_at(None).await
    }

    pub async fn snapshot_at(&self, version: Option<i64>) -> TableSnapshot {
        let def = shoplake::catalog::built_in("shopify_configuration");
        shoplake::testing::snapshot(&self.storage, def, &Location::parse(&self.table()).unwrap(), version)
            .await
            .expect("read S3 table")
    }

    pub async fn local_snapshot(&self) -> TableSnapshot {
        let def = shoplake::catalog::built_in("shopify_configuration");
        shoplake::testing::snapshot(&Storage::new(), def, &Location::Local(self.local_table()), None)
            .await
            .expect("read local table")
    }
}

/// The exit code and JSON report of an ingest.
pub fn report_of(output: Output) -> (i32, serde_json::Value) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("no JSON report ({e}); stdout: {stdout}; stderr: {}", String::from_utf8_lossy(&output.stderr))
    });
    (output.status.code().unwrap_or(-1), report)
}
