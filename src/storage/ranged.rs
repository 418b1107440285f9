//! An object read as ranged GETs, several in flight at once, handed to a
//! blocking reader in order: one GET streams at whatever one connection
//! gives, and the parse waits for it; parts fetched side by side keep the
//! parse fed (issue #30, item 4). Each GET carries the same options (the
//! export's pin: `If-Match`, its version), so every part is of the object
//! that was found.
//!
//! Memory: at most [`PARTS_IN_FLIGHT`] parts being fetched, one waiting and
//! one being read, [`PART_BYTES`] each.

use std::io::Read;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use tokio::sync::mpsc;

/// Bytes of one ranged GET.
pub const PART_BYTES: u64 = 8 << 20;
/// Ranged GETs in flight at once.
pub const PARTS_IN_FLIGHT: usize = 4;

/// What a failed GET becomes for the reader: the caller names it.
pub type ErrorMapper = Box<dyn Fn(object_store::Error) -> std::io::Error + Send + Sync>;

/// Reads the `size` bytes of `path` in parts of [`PART_BYTES`]. Needs a
/// Tokio runtime to start; read it on a blocking thread. The first failed
/// part is the read's error (through `map_err`), and nothing after it is
/// fetched; dropping the reader stops the fetching.
pub fn read_in_parts(
    store: Arc<dyn ObjectStore>,
    path: Path,
    options: GetOptions,
    size: u64,
    map_err: ErrorMapper,
) -> PartsReader {
    let (tx, parts) = mpsc::channel(1);
    let fetch = tokio::spawn(async move {
        let ranges = (0..size).step_by(PART_BYTES as usize).map(move |start| start..size.min(start + PART_BYTES));
        let mut fetched = futures::stream::iter(ranges)
            .map(|range| {
                let (store, path) = (store.clone(), path.clone());
                let options = GetOptions { range: Some(GetRange::Bounded(range.clone())), ..options.clone() };
                async move {
                    let bytes = store.get_opts(&path, options).await?.bytes().await?;
                    match bytes.len() as u64 == range.end - range.start {
                        true => Ok(bytes),
                        false => Err(object_store::Error::Generic {
                            store: "S3",
                            source: format!("bytes {range:?} of {path} came back as {} bytes", bytes.len()).into(),
                        }),
                    }
                }
            })
            .buffered(PARTS_IN_FLIGHT);
        while let Some(part) = fetched.next().await {
            let failed = part.is_err();
            if tx.send(part).await.is_err() || failed {
                break;
            }
        }
    });
    PartsReader { parts, current: Bytes::new(), remaining: size, failed: false, fetch: fetch.abort_handle(), map_err }
}

/// The blocking end of [`read_in_parts`].
pub struct PartsReader {
    parts: mpsc::Receiver<object_store::Result<Bytes>>,
    current: Bytes,
    /// Bytes not handed over yet: the parts ending before the object's
    /// size (the fetching stopped) is an error, never an early end.
    remaining: u64,
    /// A part failed: every later read fails too.
    failed: bool,
    fetch: tokio::task::AbortHandle,
    map_err: ErrorMapper,
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.failed {
                return Err(std::io::Error::other("an earlier part of the download failed"));
            }
            match self.parts.blocking_recv() {
                None if self.remaining == 0 => return Ok(0),
                None => {
                    self.failed = true;
                    let message = format!("the download stopped {} bytes before the end", self.remaining);
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message));
                }
                Some(Ok(part)) => {
                    self.remaining = self.remaining.saturating_sub(part.len() as u64);
                    self.current = part;
                }
                Some(Err(e)) => {
                    self.failed = true;
                    return Err((self.map_err)(e));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

impl Drop for PartsReader {
    fn drop(&mut self) {
        self.fetch.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    async fn read_all(
        store: Arc<dyn ObjectStore>,
        path: Path,
        options: GetOptions,
        size: u64,
    ) -> std::io::Result<Vec<u8>> {
        let mut reader = read_in_parts(store, path, options, size, Box::new(std::io::Error::other));
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).map(|_| out)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_parts_come_back_in_order_whatever_the_size() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for size in [0, 1, PART_BYTES - 1, PART_BYTES, PART_BYTES + 1, 5 * PART_BYTES + 17] {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let path = Path::from(format!("export-{size}.csv"));
            let put = store.put(&path, PutPayload::from(bytes.clone())).await.unwrap();
            let pinned = GetOptions { if_match: put.e_tag, ..GetOptions::default() };
            let read = read_all(store.clone(), path, pinned, size).await.unwrap();
            assert!(read == bytes, "{size} bytes read back as {} bytes, or in another order", read.len());
        }
    }

    #[tokio::test]
    async fn parts_that_stop_short_are_an_error_not_an_early_end() {
        let (tx, parts) = mpsc::channel(4);
        tx.send(Ok(Bytes::from_static(b"first part"))).await.unwrap();
        drop(tx); // The fetching ended (a panic, a runtime going away) before the last part.
        let fetch = tokio::spawn(async {}).abort_handle();
        let mut reader = PartsReader {
            parts,
            current: Bytes::new(),
            remaining: 20,
            failed: false,
            fetch,
            map_err: Box::new(std::io::Error::other),
        };
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let first = reader.read_to_end(&mut out);
            (out, first, reader.read(&mut [0u8; 4]))
        })
        .await
        .unwrap();
        assert_eq!(read.0, b"first part");
        assert_eq!(read.1.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(read.2.is_err(), "a read after the failure fails too");
    }

    #[tokio::test]
    async fn an_object_replaced_after_it_was_found_fails_the_read() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("export.csv");
        let size = 3 * PART_BYTES;
        let found = store.put(&path, PutPayload::from(vec![b'a'; size as usize])).await.unwrap();
        store.put(&path, PutPayload::from(vec![b'b'; size as usize])).await.unwrap();
        let pinned = GetOptions { if_match: found.e_tag, ..GetOptions::default() };
        let err = read_all(store.clone(), path.clone(), pinned, size).await.unwrap_err();
        let inner = err.into_inner().unwrap().downcast::<object_store::Error>().unwrap();
        assert!(matches!(*inner, object_store::Error::Precondition { .. }), "{inner}");
        // A size larger than the object (it was found longer): a short part is an error, not a short read.
        assert!(read_all(store, path, GetOptions::default(), size + 5).await.is_err());
    }
}
