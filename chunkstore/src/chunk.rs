//! Chunk files on disk.
//!
//! One file per chunk at `<data_dir>/chunks/<first 2 hex>/<32 hex id>`:
//! the 8-byte magic `FDCHUNK1`, the header length (u32 little endian), the
//! postcard [`ChunkHeader`], then the data. A write lands in `chunks/tmp/`,
//! is fsynced, renamed into place and its directory fsynced, so a chunk file
//! is either absent or complete. A file the scrubber finds corrupt moves to
//! `chunks/corrupt/` until a good copy replaces it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_CHUNK_HEADER_LEN, MAX_CHUNK_SIZE};
use crate::wire::{ChunkId, ChunkOwner, ListedChunk};

/// First bytes of every chunk file; the trailing digit is the format version.
pub const MAGIC: &[u8; 8] = b"FDCHUNK1";

/// Where corrupt chunk files wait for a good copy (under `chunks/`).
const CORRUPT_DIR: &str = "corrupt";

/// A chunk file the scrubber found corrupt, as `GET /chunks/quarantine` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedChunk {
    pub id: ChunkId,
    /// None when the header itself is damaged.
    pub owner: Option<ChunkOwner>,
}

/// Bytes before the postcard header: magic + header length.
const PREFIX_LEN: usize = MAGIC.len() + 4;

/// What a chunk file says about its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    pub owner: ChunkOwner,
    pub size: u64,
    pub crc32c: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk not found")]
    NotFound,
    /// The file on disk does not parse or fails its checksum.
    #[error("chunk file is corrupt: {0}")]
    Corrupt(String),
    /// A write whose data does not match the checksum the caller sent.
    #[error("checksum mismatch: expected {expected:08x}, data has {actual:08x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("chunk of {0} bytes is larger than the limit of {MAX_CHUNK_SIZE}")]
    TooLarge(u64),
    #[error("range {offset}+{len} is outside the chunk of {size} bytes")]
    RangeNotSatisfiable { offset: u64, len: u64, size: u64 },
    #[error("chunk i/o: {0}")]
    Io(#[from] io::Error),
}

/// Data read from a chunk, with what the header says about the whole chunk.
#[derive(Clone, Debug)]
pub struct ChunkRead {
    /// The requested bytes (the whole chunk or a range of it).
    pub data: Bytes,
    /// crc32c of the whole chunk (verified).
    pub crc32c: u32,
    /// Size of the whole chunk.
    pub size: u64,
    pub owner: ChunkOwner,
}

/// The chunk files of one node; cheap to clone.
#[derive(Clone)]
pub struct ChunkStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    chunk_count: AtomicU64,
    used_bytes: AtomicU64,
    quarantined: AtomicU64,
    /// Serialises "is it there? rename/remove, update counters" so that the
    /// counters stay exact when puts and deletes of one id race.
    commit: Mutex<()>,
}

impl ChunkStore {
    /// Opens (or creates) `<data_dir>/chunks`, removes temp files a crash left
    /// behind and counts the chunks.
    pub async fn open(data_dir: &Path) -> Result<ChunkStore, ChunkError> {
        let dir = data_dir.join("chunks");
        let (count, used, quarantined) = {
            let dir = dir.clone();
            blocking(move || open_dir(&dir)).await?
        };
        Ok(ChunkStore {
            inner: Arc::new(Inner {
                dir,
                chunk_count: AtomicU64::new(count),
                used_bytes: AtomicU64::new(used),
                quarantined: AtomicU64::new(quarantined),
                commit: Mutex::new(()),
            }),
        })
    }

    /// Where the chunk `id` lives on disk.
    pub fn path(&self, id: ChunkId) -> PathBuf {
        chunk_path(&self.inner.dir, id)
    }

    pub fn chunk_count(&self) -> u64 {
        self.inner.chunk_count.load(Ordering::Relaxed)
    }

    /// Bytes of chunk files (headers included).
    pub fn used_bytes(&self) -> u64 {
        self.inner.used_bytes.load(Ordering::Relaxed)
    }

    /// Writes a chunk durably after checking `data` against `crc32c`; nothing
    /// is written on a mismatch. Writing an existing id replaces it.
    pub async fn put(
        &self,
        id: ChunkId,
        owner: ChunkOwner,
        data: Bytes,
        crc32c: u32,
    ) -> Result<(), ChunkError> {
        if data.len() as u64 > MAX_CHUNK_SIZE {
            return Err(ChunkError::TooLarge(data.len() as u64));
        }
        let inner = self.inner.clone();
        blocking(move || inner.put(id, &owner, &data, crc32c)).await
    }

    /// Reads a whole chunk (`range` None) or `len` bytes at `offset`, after
    /// verifying the whole chunk's checksum.
    pub async fn get(
        &self,
        id: ChunkId,
        range: Option<(u64, u64)>,
    ) -> Result<ChunkRead, ChunkError> {
        let path = self.path(id);
        blocking(move || read_chunk(&path, range)).await
    }

    /// Up to `limit` chunks with ids above `after`, in id order, with their
    /// owners (for the garbage collector). Reads only the headers; a file
    /// whose header does not parse is left out (a read reports it corrupt).
    pub async fn list(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ListedChunk>, ChunkError> {
        let dir = self.inner.dir.clone();
        blocking(move || list_chunks(&dir, after, limit)).await
    }

    /// Up to `limit` chunk ids above `after`, in id order, headers unread
    /// (the scrubber reads each chunk whole).
    pub async fn list_ids(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkId>, ChunkError> {
        let dir = self.inner.dir.clone();
        blocking(move || list_ids(&dir, after, limit)).await
    }

    /// Which of `ids` have a chunk file here (a quarantined one does not).
    pub async fn present(&self, ids: Vec<ChunkId>) -> Result<Vec<bool>, ChunkError> {
        let paths: Vec<PathBuf> = ids.iter().map(|id| self.path(*id)).collect();
        blocking(move || Ok(paths.iter().map(|p| p.is_file()).collect())).await
    }

    /// The owner a chunk file's header names; None when there is no file.
    pub async fn owner_of(&self, id: ChunkId) -> Result<Option<ChunkOwner>, ChunkError> {
        let path = self.path(id);
        blocking(move || match read_header(&path) {
            Ok(header) => Ok(Some(header.owner)),
            Err(ChunkError::NotFound) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Moves a corrupt chunk file out of the way, into `chunks/corrupt/`,
    /// where it waits to be replaced by a good copy. Returns whether a
    /// file was moved.
    pub async fn quarantine(&self, id: ChunkId) -> Result<bool, ChunkError> {
        let inner = self.inner.clone();
        blocking(move || inner.quarantine(id)).await
    }

    /// The quarantined chunks, with their owners where the header still reads.
    pub async fn quarantined(&self) -> Result<Vec<QuarantinedChunk>, ChunkError> {
        let dir = self.inner.dir.join(CORRUPT_DIR);
        blocking(move || {
            let mut ids = ids_in(&dir)?;
            ids.sort_unstable();
            Ok(ids
                .into_iter()
                .map(|id| QuarantinedChunk {
                    id,
                    owner: read_header(&dir.join(id.to_string())).ok().map(|h| h.owner),
                })
                .collect())
        })
        .await
    }

    /// Forgets a quarantined file (a good copy is back, or none is needed).
    pub async fn release_quarantined(&self, id: ChunkId) -> Result<bool, ChunkError> {
        let inner = self.inner.clone();
        blocking(move || {
            let path = inner.dir.join(CORRUPT_DIR).join(id.to_string());
            match fs::remove_file(&path) {
                Ok(()) => {
                    inner.quarantined.fetch_sub(1, Ordering::Relaxed);
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    pub fn quarantined_count(&self) -> u64 {
        self.inner.quarantined.load(Ordering::Relaxed)
    }

    /// Removes a chunk; a missing chunk is not an error. Returns whether a
    /// file was removed.
    pub async fn delete(&self, id: ChunkId) -> Result<bool, ChunkError> {
        let inner = self.inner.clone();
        blocking(move || inner.delete(id, None)).await
    }

    /// Removes a chunk only if its file is at least `min_age` old, checked
    /// under the same lock as writes, so that a copy rewritten meanwhile (a
    /// repair's) stays. Returns whether a file was removed.
    pub async fn delete_if_older(
        &self,
        id: ChunkId,
        min_age: std::time::Duration,
    ) -> Result<bool, ChunkError> {
        let inner = self.inner.clone();
        blocking(move || inner.delete(id, Some(min_age))).await
    }
}

impl Inner {
    fn put(
        &self,
        id: ChunkId,
        owner: &ChunkOwner,
        data: &[u8],
        crc: u32,
    ) -> Result<(), ChunkError> {
        let actual = crc32c::crc32c(data);
        if actual != crc {
            return Err(ChunkError::ChecksumMismatch {
                expected: crc,
                actual,
            });
        }
        let header = ChunkHeader {
            owner: owner.clone(),
            size: data.len() as u64,
            crc32c: crc,
        };
        let header = postcard::to_stdvec(&header)
            .map_err(|e| io::Error::other(format!("encode chunk header: {e}")))?;
        if header.len() > MAX_CHUNK_HEADER_LEN as usize {
            return Err(
                io::Error::new(io::ErrorKind::InvalidInput, "chunk owner too large").into(),
            );
        }

        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{id}.{:016x}", rand::random::<u64>()));
        let written = write_file(&tmp, &header, data);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        let file_len = (PREFIX_LEN + header.len() + data.len()) as u64;

        let path = chunk_path(&self.dir, id);
        {
            let _guard = self.commit.lock().unwrap_or_else(|p| p.into_inner());
            let previous = fs::metadata(&path).ok().map(|m| m.len());
            if let Err(e) = fs::rename(&tmp, &path) {
                let _ = fs::remove_file(&tmp);
                return Err(e.into());
            }
            match previous {
                Some(old) => {
                    self.used_bytes.fetch_sub(old, Ordering::Relaxed);
                }
                None => {
                    self.chunk_count.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.used_bytes.fetch_add(file_len, Ordering::Relaxed);
        }
        // The rename is durable only once the directory entry is.
        sync_dir(path.parent().unwrap_or(&self.dir))?;
        Ok(())
    }

    fn quarantine(&self, id: ChunkId) -> Result<bool, ChunkError> {
        let path = chunk_path(&self.dir, id);
        let target = self.dir.join(CORRUPT_DIR).join(id.to_string());
        let _guard = self.commit.lock().unwrap_or_else(|p| p.into_inner());
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let replaced = target.exists();
        fs::rename(&path, &target)?;
        self.chunk_count.fetch_sub(1, Ordering::Relaxed);
        self.used_bytes.fetch_sub(len, Ordering::Relaxed);
        if !replaced {
            self.quarantined.fetch_add(1, Ordering::Relaxed);
        }
        sync_dir(path.parent().unwrap_or(&self.dir))?;
        sync_dir(&self.dir.join(CORRUPT_DIR))?;
        Ok(true)
    }

    fn delete(
        &self,
        id: ChunkId,
        min_age: Option<std::time::Duration>,
    ) -> Result<bool, ChunkError> {
        let path = chunk_path(&self.dir, id);
        let _guard = self.commit.lock().unwrap_or_else(|p| p.into_inner());
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if let Some(min_age) = min_age {
            let age = meta.modified()?.elapsed().unwrap_or_default();
            if age < min_age {
                return Ok(false);
            }
        }
        let len = meta.len();
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.chunk_count.fetch_sub(1, Ordering::Relaxed);
        self.used_bytes.fetch_sub(len, Ordering::Relaxed);
        Ok(true)
    }
}

fn chunk_path(dir: &Path, id: ChunkId) -> PathBuf {
    let name = id.to_string();
    dir.join(&name[..2]).join(name)
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ChunkError> + Send + 'static,
) -> Result<T, ChunkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ChunkError::Io(io::Error::other(format!("chunk task failed: {e}"))))?
}

fn write_file(tmp: &Path, header: &[u8], data: &[u8]) -> io::Result<()> {
    let mut file = File::create(tmp)?;
    file.write_all(MAGIC)?;
    file.write_all(&(header.len() as u32).to_le_bytes())?;
    file.write_all(header)?;
    file.write_all(data)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the directory tree (all 256 fan-out directories up front, so a put
/// never has to make a directory durable), empties `tmp/`, and returns
/// (chunk count, used bytes, quarantined chunks).
fn open_dir(dir: &Path) -> Result<(u64, u64, u64), ChunkError> {
    fs::create_dir_all(dir.join("tmp"))?;
    fs::create_dir_all(dir.join(CORRUPT_DIR))?;
    for prefix in 0..=255u8 {
        fs::create_dir_all(dir.join(hex::encode([prefix])))?;
    }
    for entry in fs::read_dir(dir.join("tmp"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    sync_dir(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }

    let (mut count, mut used) = (0u64, 0u64);
    for prefix in 0..=255u8 {
        for entry in fs::read_dir(dir.join(hex::encode([prefix])))? {
            let entry = entry?;
            let is_chunk = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.len() == 32 && name.parse::<ChunkId>().is_ok());
            let meta = entry.metadata()?;
            if is_chunk && meta.is_file() {
                count += 1;
                used += meta.len();
            }
        }
    }
    let quarantined = ids_in(&dir.join(CORRUPT_DIR))?.len() as u64;
    Ok((count, used, quarantined))
}

/// Up to `limit` ids above `after` in id order, from the fan-out directories.
fn list_ids(dir: &Path, after: Option<ChunkId>, limit: usize) -> Result<Vec<ChunkId>, ChunkError> {
    let mut listed = Vec::new();
    let first_dir = after.map_or(0, |id| id.0[0]);
    for prefix in first_dir..=255u8 {
        let mut ids = ids_in(&dir.join(hex::encode([prefix])))?;
        ids.retain(|id| after.is_none_or(|after| *id > after));
        ids.sort_unstable();
        for id in ids {
            if listed.len() >= limit {
                return Ok(listed);
            }
            listed.push(id);
        }
    }
    Ok(listed)
}

/// The chunk ids named by the files of one directory.
fn ids_in(dir: &Path) -> Result<Vec<ChunkId>, ChunkError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .filter(|name| name.len() == 32)
            .and_then(|name| name.parse::<ChunkId>().ok())
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn list_chunks(
    dir: &Path,
    after: Option<ChunkId>,
    limit: usize,
) -> Result<Vec<ListedChunk>, ChunkError> {
    let now = std::time::SystemTime::now();
    let mut listed = Vec::new();
    for id in list_ids(dir, after, limit)? {
        let path = chunk_path(dir, id);
        let header = match read_header(&path) {
            Ok(h) => h,
            // Deleted since the directory was read.
            Err(ChunkError::NotFound) => continue,
            Err(e) => {
                tracing::warn!(chunk = %id, error = %e, "unreadable chunk header; not listed");
                continue;
            }
        };
        let age_secs = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .map_or(0, |d| d.as_secs());
        listed.push(ListedChunk {
            id,
            owner: header.owner,
            size: header.size,
            age_secs,
        });
    }
    Ok(listed)
}

/// Reads only the magic and the header of a chunk file.
fn read_header(path: &Path) -> Result<ChunkHeader, ChunkError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ChunkError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let mut prefix = [0u8; PREFIX_LEN];
    io::Read::read_exact(&mut file, &mut prefix)
        .map_err(|_| ChunkError::Corrupt("file shorter than its prefix".into()))?;
    if &prefix[..MAGIC.len()] != MAGIC {
        return Err(ChunkError::Corrupt("bad magic".into()));
    }
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&prefix[MAGIC.len()..]);
    let header_len = u32::from_le_bytes(len_bytes);
    if header_len > MAX_CHUNK_HEADER_LEN {
        return Err(ChunkError::Corrupt("bad header length".into()));
    }
    let mut header = vec![0u8; header_len as usize];
    io::Read::read_exact(&mut file, &mut header)
        .map_err(|_| ChunkError::Corrupt("file shorter than its header".into()))?;
    postcard::from_bytes(&header).map_err(|e| ChunkError::Corrupt(format!("bad header: {e}")))
}

fn read_chunk(path: &Path, range: Option<(u64, u64)>) -> Result<ChunkRead, ChunkError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ChunkError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let file_len = file.metadata()?.len();
    let max_len = PREFIX_LEN as u64 + u64::from(MAX_CHUNK_HEADER_LEN) + MAX_CHUNK_SIZE;
    if file_len > max_len {
        return Err(ChunkError::Corrupt(format!(
            "file of {file_len} bytes is too large"
        )));
    }
    let mut buf = Vec::with_capacity(file_len as usize);
    io::Read::read_to_end(&mut io::Read::take(file, max_len), &mut buf)?;
    let (header, data_start) = parse(&buf)?;

    let size = header.size;
    let (offset, len) = range.unwrap_or((0, size));
    match offset.checked_add(len) {
        Some(end) if end <= size => {}
        _ => return Err(ChunkError::RangeNotSatisfiable { offset, len, size }),
    }
    let all = Bytes::from(buf);
    let start = data_start + offset as usize;
    Ok(ChunkRead {
        data: all.slice(start..start + len as usize),
        crc32c: header.crc32c,
        size,
        owner: header.owner,
    })
}

/// Parses and verifies a whole chunk file; returns the header and where the
/// data starts.
pub fn parse(buf: &[u8]) -> Result<(ChunkHeader, usize), ChunkError> {
    let corrupt = |why: &str| ChunkError::Corrupt(why.to_string());
    if buf.len() < PREFIX_LEN || &buf[..MAGIC.len()] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&buf[MAGIC.len()..PREFIX_LEN]);
    let header_len = u32::from_le_bytes(len_bytes);
    if header_len > MAX_CHUNK_HEADER_LEN || buf.len() < PREFIX_LEN + header_len as usize {
        return Err(corrupt("bad header length"));
    }
    let data_start = PREFIX_LEN + header_len as usize;
    let header: ChunkHeader = postcard::from_bytes(&buf[PREFIX_LEN..data_start])
        .map_err(|e| ChunkError::Corrupt(format!("bad header: {e}")))?;
    let data = &buf[data_start..];
    if data.len() as u64 != header.size {
        return Err(ChunkError::Corrupt(format!(
            "header says {} bytes, file holds {}",
            header.size,
            data.len()
        )));
    }
    let actual = crc32c::crc32c(data);
    if actual != header.crc32c {
        return Err(ChunkError::Corrupt(format!(
            "crc32c {actual:08x} does not match header {:08x}",
            header.crc32c
        )));
    }
    Ok((header, data_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> ChunkOwner {
        ChunkOwner {
            bucket_id: "b".into(),
            key: "k".into(),
            version: "v".into(),
        }
    }

    #[tokio::test]
    async fn put_get_range_delete_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).await.unwrap();
        let id = ChunkId::random();
        let data = Bytes::from_static(b"hello chunk");
        let crc = crc32c::crc32c(&data);
        store.put(id, owner(), data.clone(), crc).await.unwrap();
        // Idempotent rewrite does not change the counters.
        store.put(id, owner(), data.clone(), crc).await.unwrap();
        assert_eq!(store.chunk_count(), 1);
        let used = store.used_bytes();
        assert_eq!(used, fs::metadata(store.path(id)).unwrap().len());

        let read = store.get(id, None).await.unwrap();
        assert_eq!(read.data, data);
        assert_eq!(read.owner, owner());
        assert_eq!(store.get(id, Some((6, 5))).await.unwrap().data, "chunk");
        assert!(matches!(
            store.get(id, Some((6, 6))).await,
            Err(ChunkError::RangeNotSatisfiable { .. })
        ));

        let reopened = ChunkStore::open(dir.path()).await.unwrap();
        assert_eq!((reopened.chunk_count(), reopened.used_bytes()), (1, used));

        assert!(store.delete(id).await.unwrap());
        assert!(!store.delete(id).await.unwrap());
        assert_eq!((store.chunk_count(), store.used_bytes()), (0, 0));
        assert!(matches!(
            store.get(id, None).await,
            Err(ChunkError::NotFound)
        ));
    }

    #[tokio::test]
    async fn listing_pages_in_id_order_with_owners_and_skips_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).await.unwrap();
        let mut ids: Vec<ChunkId> = (0..25).map(|_| ChunkId::random()).collect();
        for id in &ids {
            let data = Bytes::from(id.to_string());
            let crc = crc32c::crc32c(&data);
            store.put(*id, owner(), data, crc).await.unwrap();
        }
        let broken = ChunkId::random();
        fs::write(store.path(broken), b"not a chunk").unwrap();
        ids.sort();

        let mut seen = Vec::new();
        let mut after = None;
        for _ in 0..10 {
            let page = store.list(after, 7).await.unwrap();
            assert!(page.len() <= 7);
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for c in &page {
                assert_eq!((&c.owner, c.size), (&owner(), 32));
                assert!(c.age_secs < 60);
            }
            seen.extend(page.into_iter().map(|c| c.id));
        }
        assert_eq!(seen, ids);
    }

    #[tokio::test]
    async fn conditional_delete_keeps_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).await.unwrap();
        let id = ChunkId::random();
        let data = Bytes::from_static(b"young");
        store
            .put(id, owner(), data.clone(), crc32c::crc32c(&data))
            .await
            .unwrap();
        let hour = std::time::Duration::from_secs(3600);
        assert!(!store.delete_if_older(id, hour).await.unwrap());
        assert!(store.path(id).exists());
        assert!(
            store
                .delete_if_older(id, std::time::Duration::ZERO)
                .await
                .unwrap()
        );
        assert_eq!((store.chunk_count(), store.used_bytes()), (0, 0));
    }

    #[tokio::test]
    async fn wrong_crc_writes_nothing_and_temp_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).await.unwrap();
        let id = ChunkId::random();
        let err = store.put(id, owner(), Bytes::from_static(b"x"), 1).await;
        assert!(matches!(err, Err(ChunkError::ChecksumMismatch { .. })));
        assert!(!store.path(id).exists());
        assert_eq!(store.chunk_count(), 0);

        let leftover = dir.path().join("chunks/tmp/leftover");
        fs::write(&leftover, b"partial").unwrap();
        ChunkStore::open(dir.path()).await.unwrap();
        assert!(!leftover.exists());
    }

    #[tokio::test]
    async fn flipped_byte_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).await.unwrap();
        let id = ChunkId::random();
        let data = Bytes::from_static(b"some data");
        store
            .put(id, owner(), data.clone(), crc32c::crc32c(&data))
            .await
            .unwrap();
        let mut raw = fs::read(store.path(id)).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        fs::write(store.path(id), &raw).unwrap();
        assert!(matches!(
            store.get(id, None).await,
            Err(ChunkError::Corrupt(_))
        ));
        assert!(matches!(
            store.get(id, Some((0, 1))).await,
            Err(ChunkError::Corrupt(_))
        ));
        // Truncated and garbage files are corrupt too, never a panic.
        fs::write(store.path(id), &raw[..5]).unwrap();
        assert!(matches!(
            store.get(id, None).await,
            Err(ChunkError::Corrupt(_))
        ));
        fs::write(store.path(id), b"FDCHUNK1\xff\xff\xff\xff").unwrap();
        assert!(matches!(
            store.get(id, None).await,
            Err(ChunkError::Corrupt(_))
        ));
    }
}
