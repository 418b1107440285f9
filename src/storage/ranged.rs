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
    PartsReader { parts, current: Bytes::new(), fetch: fetch.abort_handle(), map_err }
}

/// The blocking end of [`read_in_parts`].
pub struct PartsReader {
    parts: mpsc::Receiver<object_store::Result<Bytes>>,
    current: Bytes,
    fetch: tokio::task::AbortHandle,
    map_err: ErrorMapper,
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.parts.blocking_recv() {
                None => return Ok(0),
                Some(Ok(part)) => self.current = part,
                Some(Err(e)) => return Err((self.map_err)(e)),
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
