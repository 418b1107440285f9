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
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Internal => 1,
            Kind::Usage => 2,
            Kind::SourceMissing => 3,
            Kind::DataRejected => 4,
            Kind::Unavailable => 5,
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

    /// Wraps a deltalake error, sorting storage trouble (retry) from the rest.
    pub fn delta(stage: Stage, subject: impl fmt::Display, err: deltalake::DeltaTableError) -> Self {
        let kind = if is_storage_trouble(&err) { Kind::Unavailable } else { Kind::Internal };
        Self::new(stage, kind, subject, flatten(&err))
    }

    /// Wraps a DataFusion error; errors from storage are retryable.
    pub fn datafusion(stage: Stage, subject: impl fmt::Display, err: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as E;
        let kind = match err.find_root() {
            E::ObjectStore(_) | E::IoError(_) => Kind::Unavailable,
            _ => Kind::Internal,
        };
        Self::new(stage, kind, subject, flatten(&err))
    }

    pub fn object_store(stage: Stage, subject: impl fmt::Display, err: object_store::Error) -> Self {
        Self::new(stage, Kind::Unavailable, subject, flatten(&err))
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.exit_code())
    }
}

/// True when a deltalake error comes from the store (network, permissions,
/// throttling) rather than from the table or our use of it.
fn is_storage_trouble(err: &deltalake::DeltaTableError) -> bool {
    use deltalake::DeltaTableError as E;
    match err {
        E::ObjectStore { .. } | E::Io { .. } => true,
        E::Transaction { source } => {
            matches!(source, deltalake::kernel::transaction::TransactionError::ObjectStore { .. })
        }
        _ => {
            let text = flatten(err).to_lowercase();
            ["error sending request", "connection refused", "timed out", "dns error", "connect error"]
                .iter()
                .any(|needle| text.contains(needle))
        }
    }
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
