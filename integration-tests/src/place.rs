//! Where a test that runs on every backend puts its exports and tables: a
//! local directory, or a prefix of its own on an S3 server (buckets `raw`
//! and `lake`); and `shoplake` run against it, configured through the
//! standard AWS environment only.

use std::process::{Command, Output};

use shoplake::storage::Storage;

use crate::{shoplake_binary, Backend, Service};

pub struct Place {
    pub service: Option<Service>,
    /// Local scratch space: the local exports and lakes, HOME on S3.
    pub scratch: tempfile::TempDir,
    pub prefix: String,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(service) = &self.service {
            service.remove_prefix_if_passed(&self.prefix);
        }
    }
}

impl Place {
    /// A place on `backend` (`None`: a local directory), its prefix named after `name`.
    pub async fn new(backend: Option<Backend>, name: &str) -> Place {
        let service = match backend {
            Some(backend) => Some(Service::start(backend).await),
            None => None,
        };
        let prefix = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Place { service, scratch: tempfile::tempdir().expect("temp dir"), prefix }
    }

    /// The root of `what` (`raw` for exports, `lake` for tables).
    pub fn root(&self, what: &str) -> String {
        match &self.service {
            Some(_) => format!("s3://{what}/{}", self.prefix),
            None => self.scratch.path().join(what).display().to_string(),
        }
    }

    pub fn storage(&self) -> Storage {
        self.service.as_ref().map_or_else(Storage::new, Service::storage)
    }

    /// `program` with this place's storage settings (and nothing of the caller's).
    pub fn configured(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("RUST_LOG", "warn").env_remove("SHOPLAKE_TABLE").env_remove("SHOPLAKE_TABLES");
        if let Some(service) = &self.service {
            command
                .env("AWS_ENDPOINT_URL", &service.endpoint)
                .env("AWS_ACCESS_KEY_ID", &service.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &service.secret_key)
                .env("AWS_REGION", &service.region)
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("HOME", self.scratch.path());
        }
        command
    }

    /// `shoplake <args>`, which must succeed.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.configured(shoplake_binary()).args(args).output().expect("run shoplake");
        assert!(out.status.success(), "shoplake {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
}
