//! One command's view of the Delta logs it touches on S3, so that a table's
//! log is listed once per command and each commit file downloaded at most
//! once (issue #30), however many times deltalake and shoplake's stages
//! reload the table (creating a table lists its log before the commit and
//! reloads it twice after; every commit reloads it; registration reopens it).
//!
//! Why this is safe: a commit file never changes once written (every commit
//! is a conditional `PUT`, [`super::Storage::check_commits_are_safe`]), so
//! its bytes can be kept. A listing kept and extended with the commits this
//! command wrote is a snapshot of the log, as a loaded `DeltaTable` is: a
//! commit another writer made since is found the way it always is, by the
//! conditional `PUT` of the next version failing. When a write to a log
//! fails in a way that says another writer was there (a version that exists
//! and was not in the listing), or ends in doubt (a timeout), that log's
//! listing is dropped and the next one goes to the store.
//!
//! What is kept: the full listing of a log (asked for from its start: a
//! listing from a checkpoint on is passed through), the bytes of commit
//! files (`<20 digits>.json`, up to [`BODY_CACHE_BYTES`] in all), and the
//! metadata of the files this command wrote (their time is the store's,
//! asked with a `HEAD` when a listing first includes them). `_last_checkpoint`
//! missing from a kept listing is answered "not found" without a request.
//! Ranged reads (checkpoints), delimiter listings and everything outside
//! `_delta_log` go straight to the store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

const LOG_DIR: &str = "_delta_log";
const LAST_CHECKPOINT: &str = "_last_checkpoint";
/// The name of version 0's commit without its extension: a listing from
/// here (kernel's offset when there is no checkpoint) holds every file Delta reads.
const FIRST_VERSION: &str = "00000000000000000000";
/// Commit bytes kept per command, at most (a long log's are still listed once).
pub const BODY_CACHE_BYTES: usize = 256 << 20;

/// An object store that keeps what a command learnt of the Delta logs it read.
#[derive(Clone)]
pub struct LogCache {
    inner: Arc<dyn ObjectStore>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    logs: HashMap<Path, Log>,
    /// Commit files' bytes, with their metadata when a `GET` gave it.
    bodies: HashMap<Path, (Option<ObjectMeta>, Bytes)>,
    body_bytes: usize,
}

#[derive(Default)]
struct Log {
    /// `files` is the whole log as listed, plus this command's writes.
    listed: bool,
    /// Something changed the log in a way the cache cannot follow (a
    /// multipart upload into it): every listing goes to the store.
    bypass: bool,
    /// Bumped when the listing is dropped, so a listing that was under way
    /// then is not kept.
    generation: u64,
    files: BTreeMap<Path, Entry>,
}

#[derive(Clone)]
enum Entry {
    Known(ObjectMeta),
    /// Written by this command; the store's time is not known yet.
    Written,
}

impl LogCache {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        LogCache { inner, state: Arc::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("log cache")
    }

    /// Drops the kept listing of `log`: the next one goes to the store.
    pub fn forget_listing(&self, log: &Path) {
        let mut state = self.state();
        let entry = state.logs.entry(log.clone()).or_default();
        entry.listed = false;
        entry.generation += 1;
        entry.files.clear();
    }

    /// The log's files after `offset`, from the kept listing or, the first
    /// time, from one listing of the whole log.
    async fn listing(&self, log: Path, offset: Option<Path>) -> object_store::Result<Vec<ObjectMeta>> {
        let after = |path: &Path| offset.as_ref().is_none_or(|o| path.as_ref() > o.as_ref());
        let (kept, generation) = {
            let state = self.state();
            match state.logs.get(&log) {
                Some(entry) if entry.listed && !entry.bypass => (
                    Some(entry.files.iter().filter(|(p, _)| after(p)).map(|(p, e)| (p.clone(), e.clone())).collect()),
                    entry.generation,
                ),
                Some(entry) => (None, entry.generation),
                None => (None, 0),
            }
        };
        let entries: Vec<(Path, Entry)> = match kept {
            Some(entries) => entries,
            None => {
                let listed: Vec<ObjectMeta> = self.inner.list(Some(&log)).try_collect().await?;
                let mut state = self.state();
                let entry = state.logs.entry(log.clone()).or_default();
                if entry.generation == generation && !entry.bypass {
                    let written: Vec<(Path, Entry)> = entry
                        .files
                        .iter()
                        .filter(|(_, e)| matches!(e, Entry::Written))
                        .map(|(p, e)| (p.clone(), e.clone()))
                        .collect();
                    entry.files = listed.iter().map(|m| (m.location.clone(), Entry::Known(m.clone()))).collect();
                    entry.files.extend(written);
                    entry.listed = true;
                }
                listed
                    .into_iter()
                    .filter(|m| after(&m.location))
                    .map(|m| (m.location.clone(), Entry::Known(m)))
                    .collect()
            }
        };
        let mut metas = Vec::with_capacity(entries.len());
        for (path, entry) in entries {
            metas.push(self.meta(&path, entry).await?);
        }
        Ok(metas)
    }

    /// A file's metadata; for one this command wrote, the store's (a `HEAD`, once).
    async fn meta(&self, path: &Path, entry: Entry) -> object_store::Result<ObjectMeta> {
        match entry {
            Entry::Known(meta) => Ok(meta),
            Entry::Written => {
                let meta = self.inner.head(path).await?;
                if let Some(log) = log_of(path) {
                    let mut state = self.state();
                    if let Some(entry) = state.logs.get_mut(&log) {
                        if let Some(file) = entry.files.get_mut(path) {
                            *file = Entry::Known(meta.clone());
                        }
                    }
                }
                Ok(meta)
            }
        }
    }

    fn keep_body(&self, path: &Path, meta: Option<ObjectMeta>, body: Bytes) {
        let mut state = self.state();
        if state.body_bytes + body.len() > BODY_CACHE_BYTES {
            return;
        }
        state.body_bytes += body.len();
        if let Some((_, old)) = state.bodies.insert(path.clone(), (meta, body)) {
            state.body_bytes -= old.len();
        }
    }

    fn served(
        &self,
        log: Option<Path>,
        offset: Option<Path>,
    ) -> Option<BoxStream<'static, object_store::Result<ObjectMeta>>> {
        let log = log?;
        if offset.as_ref().is_some_and(|o| o.filename().is_none_or(|name| name > FIRST_VERSION)) {
            // From a checkpoint on: a listing of the whole log would be longer.
            let kept = self.state().logs.get(&log).is_some_and(|l| l.listed && !l.bypass);
            if !kept {
                return None;
            }
        }
        let this = self.clone();
        Some(
            stream::once(async move { this.listing(log, offset).await })
                .map_ok(|metas| stream::iter(metas.into_iter().map(Ok)))
                .try_flatten()
                .boxed(),
        )
    }
}

/// The `_delta_log` folder `path` is in, if any.
fn log_of(path: &Path) -> Option<Path> {
    let parts: Vec<_> = path.parts().collect();
    let at = parts.iter().rposition(|p| p.as_ref() == LOG_DIR)?;
    (at + 1 < parts.len()).then(|| Path::from_iter(parts[..=at].iter().cloned()))
}

/// `prefix` itself when it is a `_delta_log` folder.
fn log_dir(prefix: Option<&Path>) -> Option<Path> {
    prefix.filter(|p| p.filename() == Some(LOG_DIR)).cloned()
}

pub(crate) fn is_commit(path: &Path) -> bool {
    path.filename()
        .and_then(|name| name.strip_suffix(".json"))
        .is_some_and(|version| version.len() == 20 && version.bytes().all(|b| b.is_ascii_digit()))
}

fn plain(options: &GetOptions) -> bool {
    options.range.is_none()
        && options.version.is_none()
        && options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
}

fn whole(meta: ObjectMeta, body: Bytes) -> GetResult {
    GetResult {
        range: 0..body.len() as u64,
        payload: GetResultPayload::Stream(stream::once(async move { Ok(body) }).boxed()),
        meta,
        attributes: Attributes::default(),
    }
}

impl fmt::Debug for LogCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogCache({:?})", self.inner)
    }
}

impl fmt::Display for LogCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogCache({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for LogCache {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let Some(log) = log_of(location) else { return self.inner.put_opts(location, payload, opts).await };
        let body = is_commit(location).then(|| payload.clone());
        match self.inner.put_opts(location, payload, opts).await {
            Ok(result) => {
                self.state().logs.entry(log).or_default().files.insert(location.clone(), Entry::Written);
                match body {
                    Some(body) => self.keep_body(location, None, Bytes::from(body)),
                    None => {
                        let mut state = self.state();
                        if let Some((_, old)) = state.bodies.remove(location) {
                            state.body_bytes -= old.len();
                        }
                    }
                }
                Ok(result)
            }
            Err(error) => {
                // A refused conditional write of a file the listing has says
                // nothing new; of any other, another writer was there.
                let refused = matches!(
                    error,
                    object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
                );
                let known = self.state().logs.get(&log).is_some_and(|l| l.files.contains_key(location));
                if !(refused && known) {
                    self.forget_listing(&log);
                }
                Err(error)
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if let Some(log) = log_of(location) {
            self.forget_listing(&log);
            self.state().logs.entry(log).or_default().bypass = true;
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let Some(log) = log_of(location) else { return self.inner.get_opts(location, options).await };
        if !plain(&options) {
            return self.inner.get_opts(location, options).await;
        }
        let (entry, listed, body) = {
            let state = self.state();
            let kept = state.logs.get(&log).filter(|l| l.listed && !l.bypass);
            (kept.and_then(|l| l.files.get(location).cloned()), kept.is_some(), state.bodies.get(location).cloned())
        };
        if listed && entry.is_none() && location.filename() == Some(LAST_CHECKPOINT) {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "not in the log's listing");
            return Err(object_store::Error::NotFound { path: location.to_string(), source: Box::new(source) });
        }
        // The listing's metadata, else the one a GET of the bytes gave.
        let entry = entry.or_else(|| body.as_ref().and_then(|(meta, _)| meta.clone()).map(Entry::Known));
        if let Some(entry) = entry {
            if options.head {
                let meta = self.meta(location, entry).await?;
                return Ok(whole(meta, Bytes::new()));
            }
            if let Some((_, body)) = body {
                let meta = self.meta(location, entry).await?;
                return Ok(whole(meta, body));
            }
        }
        let result = self.inner.get_opts(location, options.clone()).await?;
        if options.head || !is_commit(location) {
            return Ok(result);
        }
        let meta = result.meta.clone();
        let body = result.bytes().await?;
        self.keep_body(location, Some(meta.clone()), body.clone());
        let mut state = self.state();
        if let Some(entry) = state.logs.get_mut(&log).filter(|l| l.listed) {
            entry.files.insert(location.clone(), Entry::Known(meta.clone()));
        }
        Ok(whole(meta, body))
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let this = self.clone();
        let marked = locations
            .map(move |path| {
                if let Some(log) = path.as_ref().ok().and_then(log_of) {
                    this.forget_listing(&log);
                }
                path
            })
            .boxed();
        let this = self.clone();
        // Dropped again once deleted: a listing made meanwhile may hold the file.
        self.inner
            .delete_stream(marked)
            .map(move |done| {
                if let Some(log) = done.as_ref().ok().and_then(log_of) {
                    this.forget_listing(&log);
                }
                done
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.served(log_dir(prefix), None).unwrap_or_else(|| self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.served(log_dir(prefix), Some(offset.clone()))
            .unwrap_or_else(|| self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        let done = self.inner.copy_opts(from, to, options).await;
        if let Some(log) = log_of(to) {
            self.forget_listing(&log);
        }
        done
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        let done = self.inner.rename_opts(from, to, options).await;
        for log in [log_of(from), log_of(to)].into_iter().flatten() {
            self.forget_listing(&log);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::PutMode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// InMemory, counting the listings of logs and the whole reads of commits.
    #[derive(Debug, Default)]
    struct Counted {
        store: InMemory,
        listings: AtomicUsize,
        reads: AtomicUsize,
        heads: AtomicUsize,
    }

    impl fmt::Display for Counted {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Counted")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Counted {
        async fn put_opts(&self, p: &Path, payload: PutPayload, o: PutOptions) -> object_store::Result<PutResult> {
            self.store.put_opts(p, payload, o).await
        }
        async fn put_multipart_opts(
            &self,
            p: &Path,
            o: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.store.put_multipart_opts(p, o).await
        }
        async fn get_opts(&self, p: &Path, o: GetOptions) -> object_store::Result<GetResult> {
            let counter = if o.head { &self.heads } else { &self.reads };
            counter.fetch_add(1, Ordering::SeqCst);
            self.store.get_opts(p, o).await
        }
        fn delete_stream(
            &self,
            paths: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.store.delete_stream(paths)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.listings.fetch_add(1, Ordering::SeqCst);
            self.store.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
            self.store.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> object_store::Result<()> {
            self.store.copy_opts(from, to, o).await
        }
    }

    fn log() -> Path {
        Path::from("lake/t/_delta_log")
    }

    fn commit(version: u64) -> Path {
        log().join(format!("{version:020}.json"))
    }

    fn create() -> PutOptions {
        PutOptions { mode: PutMode::Create, ..PutOptions::default() }
    }

    async fn names(store: &dyn ObjectStore, offset: Option<&str>) -> Vec<String> {
        let listed = match offset {
            Some(o) => store.list_with_offset(Some(&log()), &log().join(o)),
            None => store.list(Some(&log())),
        };
        let mut metas: Vec<ObjectMeta> = listed.try_collect().await.unwrap();
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        metas.into_iter().map(|m| m.location.filename().unwrap().to_string()).collect()
    }

    #[tokio::test]
    async fn a_log_is_listed_once_and_what_this_command_writes_is_added_with_the_stores_metadata() {
        let counted = Arc::new(Counted::default());
        counted.put(&commit(0), PutPayload::from_static(b"v0")).await.unwrap();
        let cache = LogCache::new(counted.clone());
        assert_eq!(names(&cache, Some(FIRST_VERSION)).await, [format!("{:020}.json", 0)]);
        assert_eq!(names(&cache, None).await.len(), 1);
        cache.put_opts(&commit(1), PutPayload::from_static(b"v1"), create()).await.unwrap();
        assert_eq!(names(&cache, Some(FIRST_VERSION)).await.len(), 2);
        assert_eq!(counted.listings.load(Ordering::SeqCst), 1, "one listing of the log");
        let listed: Vec<ObjectMeta> = cache.list(Some(&log())).try_collect().await.unwrap();
        let own = listed.iter().find(|m| m.location == commit(1)).unwrap();
        assert_eq!(own, &counted.store.head(&commit(1)).await.unwrap(), "the store's own metadata");
        assert_eq!(counted.heads.load(Ordering::SeqCst), 1, "asked once, then kept");
        // Bytes: the written commit is never downloaded, the other once.
        for _ in 0..3 {
            for (version, body) in [(0, &b"v0"[..]), (1, &b"v1"[..])] {
                let read = cache.get(&commit(version)).await.unwrap();
                assert_eq!(read.meta.location, commit(version));
                assert_eq!(&read.bytes().await.unwrap()[..], body);
            }
        }
        assert_eq!(counted.reads.load(Ordering::SeqCst), 1);
        // No checkpoint in the listing: answered without a request.
        let missing = cache.get(&log().join(LAST_CHECKPOINT)).await.unwrap_err();
        assert!(matches!(missing, object_store::Error::NotFound { .. }), "{missing}");
        assert_eq!(counted.reads.load(Ordering::SeqCst), 1);
        // A ranged read is the store's.
        assert_eq!(&cache.get_range(&commit(0), 1..2).await.unwrap()[..], b"0");
    }

    #[tokio::test]
    async fn another_writers_commit_drops_the_listing_and_the_next_one_finds_it() {
        let counted = Arc::new(Counted::default());
        counted.put(&commit(0), PutPayload::from_static(b"v0")).await.unwrap();
        let cache = LogCache::new(counted.clone());
        assert_eq!(names(&cache, None).await.len(), 1);
        // Another process commits version 1 after this command listed the log.
        counted.put(&commit(1), PutPayload::from_static(b"theirs")).await.unwrap();
        assert_eq!(names(&cache, None).await.len(), 1, "a kept listing is a snapshot, as a loaded table is");
        let refused = cache.put_opts(&commit(1), PutPayload::from_static(b"ours"), create()).await.unwrap_err();
        assert!(matches!(refused, object_store::Error::AlreadyExists { .. }), "{refused}");
        assert_eq!(names(&cache, None).await.len(), 2, "listed again after the refusal");
        assert_eq!(counted.listings.load(Ordering::SeqCst), 2);
        assert_eq!(&cache.get(&commit(1)).await.unwrap().bytes().await.unwrap()[..], b"theirs");
        // The case beside it: a refused re-write of a version the listing
        // has (the conditional-write probe) keeps the listing.
        let probe = cache.put_opts(&commit(0), PutPayload::from_static(b"v0"), create()).await.unwrap_err();
        assert!(matches!(probe, object_store::Error::AlreadyExists { .. }));
        assert_eq!(names(&cache, None).await.len(), 2);
        assert_eq!(counted.listings.load(Ordering::SeqCst), 2);
        // Forgetting it (a new load) lists again.
        cache.forget_listing(&log());
        assert_eq!(names(&cache, None).await.len(), 2);
        assert_eq!(counted.listings.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_listing_from_a_checkpoint_on_and_other_folders_are_the_stores() {
        let counted = Arc::new(Counted::default());
        for version in 0..3 {
            counted.put(&commit(version), PutPayload::from_static(b"v")).await.unwrap();
        }
        counted.put(&Path::from("lake/t/part-0.parquet"), PutPayload::from_static(b"p")).await.unwrap();
        let cache = LogCache::new(counted.clone());
        assert_eq!(names(&cache, Some(&format!("{:020}", 1))).await.len(), 2);
        assert_eq!(names(&cache, Some(&format!("{:020}", 1))).await.len(), 2);
        assert_eq!(counted.listings.load(Ordering::SeqCst), 2, "not kept: a whole listing would be longer");
        let table: Vec<ObjectMeta> = cache.list(Some(&Path::from("lake/t"))).try_collect().await.unwrap();
        assert_eq!(table.len(), 4);
        assert_eq!(counted.listings.load(Ordering::SeqCst), 3);
        // Once the whole log is kept, a later offset is served from it.
        assert_eq!(names(&cache, None).await.len(), 3);
        assert_eq!(names(&cache, Some(&format!("{:020}", 1))).await.len(), 2);
        assert_eq!(counted.listings.load(Ordering::SeqCst), 4);
        // A commit read while its log is not kept is still downloaded once.
        let reads = counted.reads.load(Ordering::SeqCst);
        let fresh = LogCache::new(counted.clone());
        for _ in 0..2 {
            assert_eq!(&fresh.get(&commit(2)).await.unwrap().bytes().await.unwrap()[..], b"v");
            assert_eq!(fresh.head(&commit(2)).await.unwrap().location, commit(2));
        }
        assert_eq!(counted.reads.load(Ordering::SeqCst), reads + 1);
        // A deletion in the log drops the listing.
        cache.delete(&commit(0)).await.unwrap();
        assert_eq!(names(&cache, None).await.len(), 2);
        assert_eq!(counted.listings.load(Ordering::SeqCst), 5);
    }
}
