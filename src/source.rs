//! Stage 1, source: finds the day's export, the definition's source pattern
//! under `--source` (`{date}.csv` by default) or the same with `.gz`, and
//! opens it as a byte stream (decompressed when gzipped), without copying it
//! into memory.
//!
//! The object found is pinned by its ETag (and S3 version, where the bucket
//! keeps versions): it is read with `If-Match`, object_store's own retries
//! of a broken download check the ETag too, and a local file is checked
//! again after it was read. An export replaced in the middle of a load
//! fails the load (exit 5, retry) instead of mixing two exports.

use std::io::Read;

use chrono::NaiveDate;
use futures::TryStreamExt;
use object_store::{GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt};

use crate::definition::TableDefinition;
use crate::error::{Error, Kind, Result, Stage};
use crate::storage::{ranged, Location, Storage};

/// The export found for a date.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub location: Location,
    pub gzipped: bool,
    pub size: u64,
    /// What the store said the object was when it was found.
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

impl SourceFile {
    pub fn uri(&self) -> String {
        self.location.to_string()
    }
}

/// Finds the export of `date` under `source`. Both the file and a `.gz` of
/// it for one day is ambiguous, and refused rather than guessed.
pub async fn locate(
    storage: &Storage,
    source: &Location,
    def: &TableDefinition,
    date: NaiveDate,
) -> Result<SourceFile> {
    let name = def.source_file(date);
    let plain = source.join(&name);
    let gzipped = source.join(&format!("{name}.gz"));
    let mut found = Vec::new();
    for (location, is_gz) in [(plain.clone(), false), (gzipped.clone(), true)] {
        let (store, path) = storage.object_store(&location).await?;
        match store.head(&path).await {
            Ok(meta) => found.push(SourceFile {
                location,
                gzipped: is_gz,
                size: meta.size,
                e_tag: meta.e_tag,
                version: meta.version,
            }),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::object_store(Stage::Source, &location, e)),
        }
    }
    match found.len() {
        1 => Ok(found.pop().expect("one file")),
        0 => {
            check_source_exists(storage, source).await?;
            Err(Error::new(
                Stage::Source,
                Kind::SourceMissing,
                &plain,
                format!("no export for {date} yet (looked for {plain} and {gzipped})"),
            ))
        }
        _ => Err(Error::rejected(
            Stage::Source,
            &plain,
            format!("both {plain} and {gzipped} exist for {date}; remove one so the load is unambiguous"),
        )),
    }
}

/// A missing export is worth a retry only where exports can appear: S3
/// answers a HEAD in a missing bucket with a bare 404, so the bucket is
/// listed to tell "not yet" (exit 3) from "no such bucket" (exit 2).
async fn check_source_exists(storage: &Storage, source: &Location) -> Result<()> {
    match source {
        Location::S3 { .. } => {
            let (store, prefix) = storage.object_store(source).await?;
            store
                .list_with_delimiter(Some(&prefix))
                .await
                .map_err(|e| Error::object_store(Stage::Source, source, e))?;
        }
        Location::Local(path) if !path.is_dir() => {
            return Err(Error::usage(Stage::Source, source, "the source directory does not exist"));
        }
        Location::Local(_) => {}
    }
    Ok(())
}

/// The hash (xxh3-128) of an export's bytes as stored, known once the
/// reader has reached the end: a load records it, so a later run of the
/// same bytes is recognised without parsing them.
#[derive(Debug, Clone, Default)]
pub struct ExportDigest(std::sync::Arc<std::sync::Mutex<Option<u128>>>);

impl ExportDigest {
    pub fn get(&self) -> Option<u128> {
        *self.0.lock().expect("export digest")
    }
}

/// Hashes the bytes as they are read.
struct Hashing<R> {
    inner: R,
    hasher: xxhash_rust::xxh3::Xxh3,
    digest: ExportDigest,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            *self.digest.0.lock().expect("export digest") = Some(self.hasher.digest128());
        } else {
            self.hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// The hash of the export's bytes, read (not parsed) to the end.
pub async fn digest(storage: &Storage, file: &SourceFile) -> Result<u128> {
    let (mut reader, digest) = open_raw(storage, file).await?;
    let location = file.location.clone();
    tokio::task::spawn_blocking(move || {
        // Small enough that what a read copies is still in the core's cache
        // when it is hashed: 256 KiB read and hashed 194 MB in 42-45 ms
        // here, 8 MiB in 58-62 ms.
        let mut buffer = vec![0u8; 256 << 10];
        while reader.read(&mut buffer)? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|e| Error::internal(Stage::Source, &location, e))?
    .map_err(|e| {
        carried_error(e)
            .unwrap_or_else(|e| Error::unavailable(Stage::Source, &location, format!("reading failed: {e}")))
    })?;
    digest.get().ok_or_else(|| Error::internal(Stage::Source, &file.location, "the export was not read to its end"))
}

/// Opens the export for reading on a blocking thread, pinned to the object
/// that was found, decompressed, with the hash of its stored bytes.
pub async fn open(storage: &Storage, file: &SourceFile) -> Result<(Box<dyn Read + Send>, ExportDigest)> {
    let (bytes, digest) = open_raw(storage, file).await?;
    let reader: Box<dyn Read + Send> = if file.gzipped { Box::new(GunzipOnFirstRead::Raw(bytes)) } else { bytes };
    Ok((reader, digest))
}

/// The export's stored bytes (compressed if it is), hashed as they are read.
/// An export on S3 larger than a part is read as ranged GETs side by side
/// ([`crate::storage::ranged`]); a smaller one, or a local file, as one.
async fn open_raw(storage: &Storage, file: &SourceFile) -> Result<(Box<dyn Read + Send>, ExportDigest)> {
    let (store, path) = storage.object_store(&file.location).await?;
    let pinned = GetOptions { if_match: file.e_tag.clone(), version: file.version.clone(), ..GetOptions::default() };
    let bytes: Box<dyn Read + Send> = match file.location {
        Location::S3 { .. } if file.size > ranged::PART_BYTES => {
            let failed = file.clone();
            let map_err = Box::new(move |e| std::io::Error::other(fetch_failed(&failed, e)));
            Box::new(ranged::read_in_parts(store, path, pinned, file.size, map_err))
        }
        _ => open_whole(store.as_ref(), &path, pinned, file).await?,
    };
    let digest = ExportDigest::default();
    let hashing = Hashing { inner: bytes, hasher: xxhash_rust::xxh3::Xxh3::new(), digest: digest.clone() };
    Ok((Box::new(hashing), digest))
}

/// The export as one GET (a local file: the file itself).
async fn open_whole(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
    pinned: GetOptions,
    file: &SourceFile,
) -> Result<Box<dyn Read + Send>> {
    let fetched = store.get_opts(path, pinned).await.map_err(|e| fetch_failed(file, e))?;
    Ok(match fetched.payload {
        GetResultPayload::File(local, _) => Box::new(local),
        GetResultPayload::Stream(stream) => {
            let stream = stream.map_err(std::io::Error::other);
            Box::new(tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream)))
        }
    })
}

/// A GET of the export that failed: gone, replaced, or the store's error.
fn fetch_failed(file: &SourceFile, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => {
            Error::new(Stage::Source, Kind::SourceMissing, &file.location, "the export disappeared while loading")
        }
        object_store::Error::Precondition { .. } => changed(file),
        e => Error::object_store(Stage::Source, &file.location, e),
    }
}

/// The stage's own error a read of the export failed with (a ranged GET's,
/// carried through `std::io::Read`), if that is what `e` holds.
pub fn carried_error(e: std::io::Error) -> std::result::Result<Error, std::io::Error> {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let inner = e.into_inner().expect("checked above");
        return Ok(*inner.downcast::<Error>().expect("checked above"));
    }
    Err(e)
}

/// A gzip decoder made on the first read: making one reads the gzip header,
/// and a download from S3 can only be read on the reader's blocking thread,
/// not on the async one that opens it.
enum GunzipOnFirstRead {
    Raw(Box<dyn Read + Send>),
    Decoding(Box<flate2::read::MultiGzDecoder<Box<dyn Read + Send>>>),
    Taken,
}

impl Read for GunzipOnFirstRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let GunzipOnFirstRead::Raw(_) = self {
            let GunzipOnFirstRead::Raw(raw) = std::mem::replace(self, GunzipOnFirstRead::Taken) else { unreachable!() };
            *self = GunzipOnFirstRead::Decoding(Box::new(flate2::read::MultiGzDecoder::new(raw)));
        }
        match self {
            GunzipOnFirstRead::Decoding(decoder) => decoder.read(buf),
            _ => Err(std::io::Error::other("the gzip reader failed to start")),
        }
    }
}

/// After a local export was read: it is still the file that was found. (A
/// download from S3 is one object version from start to end: object_store
/// checks the ETag of every retried part.)
pub async fn check_unchanged(storage: &Storage, file: &SourceFile) -> Result<()> {
    if !matches!(file.location, Location::Local(_)) {
        return Ok(());
    }
    let (store, path) = storage.object_store(&file.location).await?;
    let now = head(store.as_ref(), &path, file).await?;
    if now.e_tag != file.e_tag || now.size != file.size {
        return Err(changed(file));
    }
    Ok(())
}

async fn head(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
    file: &SourceFile,
) -> Result<object_store::ObjectMeta> {
    store.head(path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => changed(file),
        e => Error::object_store(Stage::Source, &file.location, e),
    })
}

fn changed(file: &SourceFile) -> Error {
    Error::unavailable(
        Stage::Source,
        &file.location,
        "the export was replaced while it was being loaded; nothing was written, run again to load the new file",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_export_replaced_after_it_was_found_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let day = NaiveDate::from_ymd_opt(2019, 4, 1).unwrap();
        let path = dir.path().join("2019-04-01.csv");
        std::fs::write(&path, "first export\n").unwrap();
        let storage = Storage::new();
        let source = Location::Local(dir.path().to_path_buf());

        let def = crate::catalog::built_in("shopify_configuration");
        let file = locate(&storage, &source, def, day).await.unwrap();
        check_unchanged(&storage, &file).await.expect("nothing changed yet");
        // Rewritten in place with other content (another size).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "the second, longer export\n").unwrap();
        let err = check_unchanged(&storage, &file).await.unwrap_err();
        assert_eq!(err.kind, Kind::Unavailable, "{err}");
        assert!(err.message.contains("replaced while it was being loaded"), "{err}");
        let err = open(&storage, &file).await.err().expect("If-Match fails");
        assert_eq!(err.kind, Kind::Unavailable, "{err}");
        let err = digest(&storage, &file).await.expect_err("If-Match fails");
        assert_eq!(err.kind, Kind::Unavailable, "{err}");
    }

    #[tokio::test]
    async fn a_missing_source_directory_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let day = NaiveDate::from_ymd_opt(2019, 4, 1).unwrap();
        let storage = Storage::new();
        let def = crate::catalog::built_in("shopify_configuration");
        let err = locate(&storage, &Location::Local(dir.path().to_path_buf()), def, day).await.unwrap_err();
        assert_eq!(err.kind, Kind::SourceMissing, "an empty directory: the export is not there yet");
        let err = locate(&storage, &Location::Local(dir.path().join("nope")), def, day).await.unwrap_err();
        assert_eq!(err.kind, Kind::Usage, "{err}");
    }
}
