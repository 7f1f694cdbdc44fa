//! Large bodies held on disk instead of in the heap.
//!
//! mitmproxy holds every buffered body in memory; so did flowtap, and a 200 MiB download that a
//! script reads cost the proxy and the worker four times the body. Here a body that grows past
//! [`SPILL_BYTES`] while it is being collected moves to an unlinked file (mode 0600, in a
//! directory the caller names: the proxy's confdir) and comes back as a [`Bytes`] that maps that
//! file. Everything downstream keeps working on `Bytes`.
//!
//! A mapped body costs resident memory only for the pages touched through the mapping, so the
//! code that streams a held body out (to a socket, to the worker, into the store) goes through
//! [`slices`] and [`release`]: after each slice the pages behind it are given back to the
//! kernel (`MADV_DONTNEED`; the data stays in the file and is read again if touched again).
//! [`release`] does nothing for a body in the heap, so callers need not know which kind they
//! hold.
//!
//! Reader's start: [`Collector`] (how a body is gathered), then [`release`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};

/// A body that grows past this many bytes while collected goes to disk (when a directory is
/// given). Smaller bodies stay in the heap: a file costs a few system calls.
pub const SPILL_BYTES: usize = 8 * 1024 * 1024;

/// The slice size in which held bodies are streamed out and their pages released.
pub const SLICE_BYTES: usize = 1024 * 1024;

/// Gathers one body piece by piece: in the heap up to [`SPILL_BYTES`], then in an unlinked file
/// in `dir` (when a directory was given; without one, always in the heap).
#[derive(Debug)]
pub struct Collector {
    dir: Option<PathBuf>,
    /// The announced length, capped at [`SPILL_BYTES`]: what the heap buffer reserves.
    reserve: usize,
    /// The first piece, kept as it came while it is the only one.
    first: Option<Bytes>,
    heap: BytesMut,
    file: Option<File>,
    len: usize,
}

impl Collector {
    /// A collector that spills to `dir`, expecting about `size_hint` bytes (an announced
    /// length: only a hint, the heap buffer never reserves more than [`SPILL_BYTES`]).
    pub fn new(dir: Option<&Path>, size_hint: u64) -> Self {
        Self {
            dir: dir.map(Path::to_path_buf),
            reserve: usize::try_from(size_hint.min(SPILL_BYTES as u64)).unwrap_or(0),
            first: None,
            heap: BytesMut::new(),
            file: None,
            len: 0,
        }
    }

    /// Bytes collected so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a piece. Fails only when the body is on disk and the write failed (disk full).
    pub fn push(&mut self, piece: &[u8]) -> io::Result<()> {
        self.len += piece.len();
        if let Some(file) = self.file.as_mut() {
            return file.write_all(piece);
        }
        let first = self.first.take();
        let held = first.as_ref().map_or(self.heap.len(), Bytes::len);
        if let Some(dir) = self.dir.as_deref()
            && held + piece.len() > SPILL_BYTES
        {
            let mut file = unlinked_file(dir)?;
            file.write_all(first.as_deref().unwrap_or(&self.heap))?;
            file.write_all(piece)?;
            self.heap = BytesMut::new();
            self.file = Some(file);
            return Ok(());
        }
        match first {
            Some(first) => {
                self.heap
                    .reserve(self.reserve.max(first.len() + piece.len()));
                self.heap.extend_from_slice(&first);
            }
            None if self.heap.capacity() == 0 => {
                self.heap.reserve(self.reserve.max(piece.len()));
            }
            None => {}
        }
        self.heap.extend_from_slice(piece);
        Ok(())
    }

    /// Adds a piece the caller owns: a first piece that fits is kept without a copy.
    pub fn push_owned(&mut self, piece: Bytes) -> io::Result<()> {
        if self.len == 0 && piece.len() <= SPILL_BYTES {
            self.len = piece.len();
            self.first = Some(piece);
            return Ok(());
        }
        self.push(&piece)
    }

    /// The whole body: the heap buffer, or the file mapped.
    pub fn finish(self) -> io::Result<Bytes> {
        match (self.file, self.first) {
            (None, Some(first)) => Ok(first),
            (None, None) => Ok(self.heap.freeze()),
            (Some(file), _) => map(&file, self.len),
        }
    }
}

/// An unlinked file in `dir`, readable by its owner only.
fn unlinked_file(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_TMPFILE: the file never has a name. Filesystems without it get a named file that is
    // unlinked at once.
    let anonymous = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match anonymous {
        Ok(file) => Ok(file),
        Err(_) => {
            let path = dir.join(format!(".spill-{}", uuid::Uuid::new_v4().simple()));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
    }
}

/// The live mappings, start address to end address, so that [`release`] knows a mapped body
/// from a heap one.
static MAPPINGS: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

/// How many mappings are live: [`is_spilled`] answers without the lock while there are none.
static LIVE: AtomicUsize = AtomicUsize::new(0);

fn mappings() -> std::sync::MutexGuard<'static, BTreeMap<usize, usize>> {
    MAPPINGS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A read-only mapping of a whole spill file; unmapped when the last `Bytes` of it goes.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; reading it from any thread is
// sound, and it is unmapped only in `drop`, when no reference to it remains.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live PROT_READ mapping of `len` bytes (checked non-empty in `map`).
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        mappings().remove(&(self.ptr as usize));
        LIVE.fetch_sub(1, Ordering::Release);
        // SAFETY: the mapping was made by `map` with this address and length and is unmapped
        // once, here.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// Maps `len` bytes of `file` read-only. The file's descriptor is closed by the caller; the
/// mapping keeps the (unlinked) file alive.
fn map(file: &File, len: usize) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: a fresh read-only shared mapping of a file this process wrote and nobody else can
    // open (it has no name); nothing writes to it after this point.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    mappings().insert(ptr as usize, ptr as usize + len);
    LIVE.fetch_add(1, Ordering::Release);
    Ok(Bytes::from_owner(Mapping { ptr, len }))
}

/// True when `data` lies in a body held on disk.
pub fn is_spilled(data: &[u8]) -> bool {
    if LIVE.load(Ordering::Acquire) == 0 {
        return false;
    }
    let start = data.as_ptr() as usize;
    mappings()
        .range(..=start)
        .next_back()
        .is_some_and(|(_, &end)| start < end)
}

/// Gives back the resident pages wholly inside `data` when it lies in a body held on disk (its
/// content stays in the file and is read again if touched again); does nothing otherwise.
pub fn release(data: &[u8]) {
    if data.is_empty() || !is_spilled(data) {
        return;
    }
    let page = page_size();
    let start = (data.as_ptr() as usize).div_ceil(page) * page;
    let end = (data.as_ptr() as usize + data.len()) / page * page;
    if end > start {
        // SAFETY: [start, end) is page-aligned and inside a live read-only file mapping (checked
        // above; the caller's `data` keeps it alive). MADV_DONTNEED on such a mapping drops
        // only the page-table entries: the data is read back from the file on the next touch.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

/// `body` in slices of at most [`SLICE_BYTES`] (views, not copies). A caller streaming a held
/// body out calls [`release`] on each slice once it is written.
pub fn slices(body: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    (0..body.len())
        .step_by(SLICE_BYTES)
        .map(|offset| body.slice(offset..(offset + SLICE_BYTES).min(body.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_stay_in_the_heap() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collector::new(Some(dir.path()), 10);
        c.push(b"hello ").unwrap();
        c.push_owned(Bytes::from_static(b"world")).unwrap();
        let body = c.finish().unwrap();
        assert_eq!(&body[..], b"hello world");
        assert!(!is_spilled(&body));
    }

    #[test]
    fn large_bodies_move_to_an_unlinked_file_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collector::new(Some(dir.path()), 0);
        let piece: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        for _ in 0..(SPILL_BYTES / piece.len() + 3) {
            c.push(&piece).unwrap();
        }
        let len = c.len();
        let body = c.finish().unwrap();
        assert_eq!(body.len(), len);
        assert!(is_spilled(&body));
        assert!(is_spilled(&body[len - 1..]));
        // Nothing is left with a name in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Released pages read back the same.
        let mut seen = 0;
        for s in slices(&body) {
            assert!(
                s.iter()
                    .enumerate()
                    .all(|(i, b)| *b == ((seen + i) % 256) as u8)
            );
            seen += s.len();
            release(&s);
        }
        assert_eq!(seen, len);
        release(&body);
        assert_eq!(body[len - 1], ((len - 1) % 256) as u8);
        let addr = body.as_ptr() as usize;
        drop(body);
        assert!(!mappings().contains_key(&addr));
    }

    #[test]
    fn without_a_directory_everything_stays_in_the_heap() {
        let mut c = Collector::new(None, 0);
        c.push(&vec![7u8; SPILL_BYTES + 1]).unwrap();
        let body = c.finish().unwrap();
        assert_eq!(body.len(), SPILL_BYTES + 1);
        assert!(!is_spilled(&body));
        release(&body);
        assert_eq!(body[SPILL_BYTES], 7);
    }
}
