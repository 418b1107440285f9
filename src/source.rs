//! Stage 1, source: finds the day's export, `<source>/<YYYY-MM-DD>.csv` or
//! `.csv.gz`, and opens it as a byte stream (decompressed when gzipped),
//! without copying it into memory.

use std::io::Read;

use chrono::NaiveDate;
use futures::TryStreamExt;
use object_store::{GetResultPayload, ObjectStoreExt};

use crate::error::{Error, Kind, Result, Stage};
use crate::storage::{Location, Storage};

/// The export found for a date.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub location: Location,
    pub gzipped: bool,
    pub size: u64,
}

impl SourceFile {
    pub fn uri(&self) -> String {
        self.location.to_string()
    }
}

/// File name of the export for `date`.
pub fn file_name(date: NaiveDate) -> String {
    format!("{}.csv", date.format("%Y-%m-%d"))
}

/// Finds the export for `date` under `source`. Both a `.csv` and a `.csv.gz`
/// for one day is ambiguous, and refused rather than guessed.
pub async fn locate(storage: &Storage, source: &Location, date: NaiveDate) -> Result<SourceFile> {
    let plain = source.join(&file_name(date));
    let gzipped = source.join(&format!("{}.gz", file_name(date)));
    let mut found = Vec::new();
    for (location, is_gz) in [(plain.clone(), false), (gzipped.clone(), true)] {
        let (store, path) = storage.object_store(&location).await?;
        match store.head(&path).await {
            Ok(meta) => found.push(SourceFile { location, gzipped: is_gz, size: meta.size }),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::object_store(Stage::Source, &location, e)),
        }
    }
    match found.len() {
        1 => Ok(found.pop().expect("one file")),
        0 => Err(Error::new(
            Stage::Source,
            Kind::SourceMissing,
            &plain,
            format!("no export for {date} yet (looked for {plain} and {gzipped})"),
        )),
        _ => Err(Error::rejected(
            Stage::Source,
            &plain,
            format!("both {plain} and {gzipped} exist for {date}; remove one so the load is unambiguous"),
        )),
    }
}

/// Opens the export for reading on a blocking thread.
pub async fn open(storage: &Storage, file: &SourceFile) -> Result<Box<dyn Read + Send>> {
    let (store, path) = storage.object_store(&file.location).await?;
    let fetched = store.get(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => {
            Error::new(Stage::Source, Kind::SourceMissing, &file.location, "the export disappeared while loading")
        }
        e => Error::object_store(Stage::Source, &file.location, e),
    })?;
    let bytes: Box<dyn Read + Send> = match fetched.payload {
        GetResultPayload::File(local, _) => Box::new(local),
        GetResultPayload::Stream(stream) => {
            let stream = stream.map_err(std::io::Error::other);
            Box::new(tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream)))
        }
    };
    Ok(if file.gzipped { Box::new(flate2::read::MultiGzDecoder::new(bytes)) } else { bytes })
}
