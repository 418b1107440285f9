//! The one error type of shoplake: which stage failed, on which file or
//! table, and why. Its kind decides the process exit code (PRODUCT.md,
//! "Exit codes"), so the scheduler knows whether to retry or alert.

use std::fmt;
use std::process::ExitCode;

/// The stage of a run that failed; named in every error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    CommandLine,
    Definition,
    Storage,
    Source,
    Read,
    Transform,
    Validate,
    Write,
    Rejects,
    Report,
    Query,
    Generate,
    Maintain,
    Catalog,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Stage::CommandLine => "command line",
            Stage::Definition => "table definition",
            Stage::Storage => "storage",
            Stage::Source => "source",
            Stage::Read => "read",
            Stage::Transform => "transform",
            Stage::Validate => "validate",
            Stage::Write => "write",
            Stage::Rejects => "rejects",
            Stage::Report => "report",
            Stage::Query => "query",
            Stage::Generate => "generate",
            Stage::Maintain => "maintain",
            Stage::Catalog => "catalog registration",
        };
        f.write_str(name)
    }
}

/// What went wrong, as far as the scheduler is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bug or an unexpected failure: alert (exit 1).
    Internal,
    /// The command line, an argument or a query is wrong: alert (exit 2).
    Usage,
    /// The source file for the date does not exist (yet): retry later (exit 3).
    SourceMissing,
    /// The data was refused: alert, do not retry (exit 4).
    DataRejected,
    /// Storage unreachable or commit conflicts exhausted: retry (exit 5).
    Unavailable,
    /// The data committed, but its catalog entry (Glue, Unity Catalog)
    /// could not be written: retry, the next run registers it (exit 6).
    Unregistered,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Internal => 1,
            Kind::Usage => 2,
            Kind::SourceMissing => 3,
            Kind::DataRejected => 4,
            Kind::Unavailable => 5,
            Kind::Unregistered => 6,
        }
    }
}

/// A failed stage, on a subject (a file or table URI), with a message meant
/// for the person reading the scheduler's log.
#[derive(Debug, thiserror::Error)]
#[error("{stage} failed for {subject}: {message}")]
pub struct Error {
    pub stage: Stage,
    pub kind: Kind,
    pub subject: String,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A location that does not parse is the user's to fix (exit 2).
impl From<shoplake_parse::location::BadLocation> for Error {
    fn from(bad: shoplake_parse::location::BadLocation) -> Self {
        Error::usage(Stage::CommandLine, bad.text, bad.why)
    }
}

impl Error {
    pub fn new(stage: Stage, kind: Kind, subject: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error { stage, kind, subject: subject.to_string(), message: message.to_string() }
    }

    pub fn internal(stage: Stage, subject: impl fmt::Display, message: impl fmt::Display) -> Self {
        Self::new(stage, Kind::Internal, subject, message)
    }

    pub fn usage(stage: Stage, subject: impl fmt::Display, message: impl fmt::Display) -> Self {
        Self::new(stage, Kind::Usage, subject, message)
    }

    pub fn rejected(stage: Stage, subject: impl fmt::Display, message: impl fmt::Display) -> Self {
        Self::new(stage, Kind::DataRejected, subject, message)
    }

    pub fn unavailable(stage: Stage, subject: impl fmt::Display, message: impl fmt::Display) -> Self {
        Self::new(stage, Kind::Unavailable, subject, message)
    }

    /// Wraps a deltalake error: what its causes say (a configuration
    /// mistake, an outage, a commit conflict), else an internal error.
    pub fn delta(stage: Stage, subject: impl fmt::Display, err: deltalake::DeltaTableError) -> Self {
        let kind = kind_of(&err).unwrap_or(Kind::Internal);
        Self::new(stage, kind, subject, describe(&err))
    }

    /// Wraps a DataFusion error the same way; its store errors are classified.
    pub fn datafusion(stage: Stage, subject: impl fmt::Display, err: datafusion::error::DataFusionError) -> Self {
        // Out of `--memory-limit` in an operator that cannot spill: the
        // same run would fail again; an operator raises the limit.
        if let datafusion::error::DataFusionError::ResourcesExhausted(_) = err.find_root() {
            let message = format!("{} (raise --memory-limit)", describe(&err));
            return Self::new(stage, Kind::Usage, subject, message);
        }
        let kind = kind_of(&err).unwrap_or(Kind::Internal);
        Self::new(stage, kind, subject, describe(&err))
    }

    /// Wraps an object store error; unless its causes say otherwise, the store is unavailable.
    pub fn object_store(stage: Stage, subject: impl fmt::Display, err: object_store::Error) -> Self {
        let kind = kind_of(&err).unwrap_or(Kind::Unavailable);
        Self::new(stage, kind, subject, describe(&err))
    }

    /// Wraps a local I/O error, sorted by its kind.
    pub fn io(stage: Stage, subject: impl fmt::Display, doing: &str, err: std::io::Error) -> Self {
        let kind = kind_of(&err).unwrap_or(Kind::Unavailable);
        Self::new(stage, kind, subject, format!("{doing}: {err}"))
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.exit_code())
    }
}

/// What the scheduler should do about an error, read off the types of its
/// chain of causes (never its message text): `None` when nothing in it says.
///
/// * S3 refusing for good (access denied, no such bucket, another region,
///   bad signature) and missing credentials: configuration, exit 2.
/// * Connection failures, timeouts, 5xx after retries, commit conflicts:
///   unavailable, exit 5.
/// * Local I/O: permissions and paths that cannot be used are
///   configuration; the rest (disk full, I/O errors) unavailable.
pub fn kind_of(err: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    use deltalake::kernel::transaction::TransactionError;
    use object_store::client::{HttpError, HttpErrorKind};
    use std::io::ErrorKind as Io;
    // An S3 refusal or missing credentials decide, wherever they sit in
    // the chain (a writer may wrap them in an I/O error of its own).
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if current.downcast_ref::<S3Refused>().is_some() {
            return Some(Kind::Usage);
        }
        if let Some(missing) = current.downcast_ref::<NoCredentials>() {
            return Some(if missing.transient { Kind::Unavailable } else { Kind::Usage });
        }
        cause = current.source();
    }
    let mut store_failed = false;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if let Some(http) = current.downcast_ref::<HttpError>() {
            if matches!(
                http.kind(),
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted
            ) {
                return Some(Kind::Unavailable);
            }
        }
        if let Some(store) = current.downcast_ref::<object_store::Error>() {
            match store {
                object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                    return Some(Kind::Usage)
                }
                object_store::Error::Generic { .. } => store_failed = true,
                _ => {}
            }
        }
        if let Some(transaction) = current.downcast_ref::<TransactionError>() {
            if matches!(
                transaction,
                TransactionError::CommitConflict(_)
                    | TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_)
            ) {
                return Some(Kind::Unavailable);
            }
        }
        if let Some(deltalake::DeltaTableError::VersionAlreadyExists(_)) = current.downcast_ref() {
            return Some(Kind::Unavailable);
        }
        // The kernel keeps the store's error without exposing it as a source.
        if let Some(delta_kernel::Error::ObjectStore(store)) = current.downcast_ref::<delta_kernel::Error>() {
            return kind_of(store).or(Some(Kind::Unavailable));
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                Io::PermissionDenied
                | Io::NotADirectory
                | Io::IsADirectory
                | Io::ReadOnlyFilesystem
                | Io::InvalidFilename
                | Io::AlreadyExists => Kind::Usage,
                _ => Kind::Unavailable,
            });
        }
        cause = current.source();
    }
    // A store error with no more telling cause: 5xx or throttling after retries.
    store_failed.then_some(Kind::Unavailable)
}

/// The message of an error: an S3 refusal or missing credentials speak for
/// themselves; otherwise the whole chain of causes, flattened.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if let Some(refused) = current.downcast_ref::<S3Refused>() {
            return refused.to_string();
        }
        if let Some(missing) = current.downcast_ref::<NoCredentials>() {
            return missing.to_string();
        }
        if let Some(delta_kernel::Error::ObjectStore(store)) = current.downcast_ref::<delta_kernel::Error>() {
            return describe(store);
        }
        cause = current.source();
    }
    flatten(err)
}

/// One line with the whole chain of causes, without repeating a cause that
/// the outer message already quotes.
pub fn flatten(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

// The store's refusals, raised by the S3 client (`crate::storage::s3`)
// and classified here by type.

/// S3 refused a request in a way no retry can fix: a configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Refused {
    pub method: String,
    /// The request's path: the object (and, path-style, its bucket).
    pub object: String,
    pub status: u16,
    /// S3's error code (`AccessDenied`, `NoSuchBucket`, …), when it sent one.
    pub code: Option<String>,
    pub message: Option<String>,
    /// The bucket's region, when S3 said which it is.
    pub region: Option<String>,
    pub reason: &'static str,
}

impl fmt::Display for S3Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (S3 answered {} {} {} with {}",
            self.reason,
            self.method,
            self.object,
            self.status,
            self.code.as_deref().unwrap_or("no error code")
        )?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(region) = &self.region {
            write!(f, "; the bucket is in {region}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for S3Refused {}

/// The AWS configuration yields no usable credentials.
#[derive(Debug)]
pub struct NoCredentials {
    pub detail: String,
    /// The credential provider timed out or failed unexpectedly: worth a retry.
    pub transient: bool,
}

impl fmt::Display for NoCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no AWS credentials: {}", self.detail)
    }
}

impl std::error::Error for NoCredentials {}

#[cfg(test)]
mod tests {
    use super::*;
    use super::{NoCredentials, S3Refused};
    use object_store::client::{HttpError, HttpErrorKind};

    fn refused(code: &str) -> object_store::Error {
        let refusal = S3Refused {
            method: "GET".into(),
            object: "/lake/t/_delta_log/00000000000000000000.json".into(),
            status: 403,
            code: Some(code.into()),
            message: None,
            region: None,
            reason: "access denied",
        };
        object_store::Error::Generic { store: "S3", source: Box::new(HttpError::new(HttpErrorKind::Unknown, refusal)) }
    }

    #[test]
    fn errors_are_classified_by_the_types_of_their_causes() {
        assert_eq!(kind_of(&refused("AccessDenied")), Some(Kind::Usage));
        let wrapped = deltalake::DeltaTableError::ObjectStore { source: refused("NoSuchBucket") };
        assert_eq!(kind_of(&wrapped), Some(Kind::Usage), "through deltalake's wrapper");
        let connect = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(HttpErrorKind::Connect, std::io::Error::other("refused"))),
        };
        assert_eq!(kind_of(&connect), Some(Kind::Unavailable));
        let server = object_store::Error::Generic { store: "S3", source: "503 Slow Down".into() };
        assert_eq!(kind_of(&server), Some(Kind::Unavailable), "5xx after retries");
        let wrapped = std::io::Error::other(refused("AccessDenied"));
        assert_eq!(kind_of(&wrapped), Some(Kind::Usage), "a refusal inside a writer's I/O error");
        let no_credentials = object_store::Error::Generic {
            store: "S3",
            source: Box::new(NoCredentials { detail: "none in the chain".into(), transient: false }),
        };
        assert_eq!(kind_of(&no_credentials), Some(Kind::Usage));
        let denied = object_store::Error::PermissionDenied { path: "x".into(), source: "403".into() };
        assert_eq!(kind_of(&denied), Some(Kind::Usage));
        let conflict = deltalake::DeltaTableError::Transaction {
            source: deltalake::kernel::transaction::TransactionError::CommitConflict(
                deltalake::kernel::transaction::CommitConflictError::ConcurrentTransaction,
            ),
        };
        assert_eq!(kind_of(&conflict), Some(Kind::Unavailable), "commit conflicts are retryable (restore, maintain)");
        assert_eq!(Error::delta(Stage::Maintain, "t", conflict).kind, Kind::Unavailable);
        let in_the_way = std::io::Error::from(std::io::ErrorKind::NotADirectory);
        assert_eq!(kind_of(&in_the_way), Some(Kind::Usage));
        let disk_full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(kind_of(&disk_full), Some(Kind::Unavailable));
        assert_eq!(kind_of(&std::fmt::Error), None);
    }

    #[test]
    fn an_s3_refusal_is_the_message() {
        let error = Error::object_store(Stage::Source, "s3://raw/x.csv", refused("AccessDenied"));
        assert_eq!(error.kind, Kind::Usage);
        assert!(
            error.message.starts_with(
                "access denied (S3 answered GET /lake/t/_delta_log/00000000000000000000.json 403 with AccessDenied"
            ),
            "{error}"
        );
    }
}
