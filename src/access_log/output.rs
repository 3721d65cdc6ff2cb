//! The access log's file. A log is written once and not read back, so on a file system that
//! allows it the log bypasses the page cache: whole [`BLOCK`]s go to the disk by direct I/O
//! (`O_DIRECT`), from memory the writer owns, with no copy into the kernel and no page to
//! allocate, write back and free. On the VM the benchmarks run on, 25 MB/s of log took
//! 0.18 s of CPU in 15 s this way against 0.41–0.50 s through the page cache even when
//! cleaned behind (below) and 1.5 s left to the kernel (a C loop writing 1 MiB every 40 ms,
//! whole-machine busy time).
//!
//! Bytes wait in the block until it is full or until the oldest of them is [`FLUSH`] old;
//! then the block's whole pages go by direct I/O too and the last, partial page through the
//! page cache, so that a quiet log still reaches the file within a fraction of a second.
//! Direct I/O of the same page later replaces that page's cached copy (the kernel writes it
//! back and drops it first). A file system that refuses direct I/O (tmpfs, say) gets writes
//! through the page cache, cleaned behind: each [`WRITE_BACK`] is sent to the disk as soon
//! as it is written (`sync_file_range`, which does not wait) and dropped from the page cache
//! a round later (`POSIX_FADV_DONTNEED`). A file that is not a regular file (`/dev/null`, a
//! pipe, a tty) gets plain writes.
//!
//! The writer is the file's only writer: it writes at offsets it keeps, from the file's
//! length when opened. A file truncated under it (logrotate's `copytruncate`) is noticed at
//! the next write and written from its new end, with no hole.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// The size of a direct write, and of the memory that collects it.
pub(super) const BLOCK: usize = 1 << 20;
/// The alignment of a direct write's offset, length and memory: the page size, a multiple of
/// the logical block size of the disks in use.
const ALIGN: usize = 4096;
/// The longest bytes wait in the block before they are written anyway. (Zero in unit tests,
/// whose writer tests wait for lines handed over, not for this.)
pub(super) const FLUSH: Duration = if cfg!(test) {
    Duration::ZERO
} else {
    Duration::from_millis(250)
};
/// Through the page cache: how much written log the writer lets build up before it starts
/// the write-back of it, and how much it leaves in the page cache after that.
pub(super) const WRITE_BACK: u64 = 1 << 20;

pub(super) struct Output {
    file: File,
    how: How,
    /// How long bytes may wait in the block ([`FLUSH`]).
    patience: Duration,
}

enum How {
    Direct(Block),
    /// Through the page cache, cleaned behind: where the next write lands, where the range
    /// whose write-back has not been started begins, and where the range still in the page
    /// cache begins.
    Cached {
        written: u64,
        started: u64,
        dropped: u64,
    },
    /// Not a regular file: plain writes, counted.
    Plain {
        written: u64,
    },
}

/// The block of the file being filled, in memory: the file's bytes from `base` to
/// `base + len`.
struct Block {
    /// [`BLOCK`] bytes from `at` on are the block, aligned for direct I/O.
    mem: Vec<u8>,
    at: usize,
    /// Where the block starts in the file: a multiple of [`ALIGN`].
    base: u64,
    len: usize,
    /// How much of the block has gone by direct I/O (whole pages).
    direct: usize,
    /// How much of the block is in the file, by either way.
    flushed: usize,
    /// Bytes between the file's end when it was opened and `base` (a file opened with a
    /// length that is not a multiple of [`ALIGN`]): written through the page cache as they
    /// come, before the block's.
    lead: usize,
    /// When the oldest byte not yet in the file came.
    since: Option<Instant>,
    /// The file's flags without `O_APPEND` and `O_DIRECT`.
    flags: libc::c_int,
}

impl Output {
    pub(super) fn new(file: File) -> Output {
        let meta = file.metadata().ok();
        let len = meta.as_ref().map_or(0, |m| m.len());
        let how = match meta {
            Some(m) if m.file_type().is_file() => match direct_flags(&file) {
                Some(flags) => How::Direct(Block::at_end(len, flags)),
                None => cached(len),
            },
            _ => How::Plain { written: len },
        };
        Output {
            file,
            how,
            patience: FLUSH,
        }
    }

    /// Whether whole blocks go to the disk by direct I/O.
    pub(super) fn direct(&self) -> bool {
        matches!(self.how, How::Direct(_))
    }

    /// Where the next byte lands: the file's length when opened plus what was written since.
    pub(super) fn written(&self) -> u64 {
        match &self.how {
            How::Direct(b) => b.end(),
            How::Cached { written, .. } | How::Plain { written } => *written,
        }
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.how {
            How::Direct(b) => {
                let mut rest = bytes;
                let result = b.write(&self.file, &mut rest);
                self.after(result)?;
                // What a refused direct write left goes through the page cache now.
                if rest.is_empty() {
                    Ok(())
                } else {
                    self.write(rest)
                }
            }
            How::Cached { written, .. } => {
                let result = self.file.write_all(bytes);
                // On an error, part may have been written; the length is re-read then.
                match &result {
                    Ok(()) => *written += bytes.len() as u64,
                    Err(_) => *written = self.file.metadata().map_or(*written, |m| m.len()),
                }
                self.clean();
                result
            }
            How::Plain { written } => {
                *written += bytes.len() as u64;
                self.file.write_all(bytes)
            }
        }
    }

    /// Writes the block's bytes that have waited [`FLUSH`] by `now`.
    pub(super) fn tick(&mut self, now: Instant) -> io::Result<()> {
        match &self.how {
            How::Direct(b) if b.since.is_some_and(|s| now >= s + self.patience) => self.flush(),
            _ => Ok(()),
        }
    }

    /// Writes every byte held (before the file is closed).
    pub(super) fn flush(&mut self) -> io::Result<()> {
        match &mut self.how {
            How::Direct(b) => {
                let result = b.sync(&self.file, true);
                self.after(result)
            }
            _ => Ok(()),
        }
    }

    /// A direct write the file system refused (`EINVAL`): the held bytes and all later ones go
    /// through the page cache.
    fn after(&mut self, result: io::Result<()>) -> io::Result<()> {
        let How::Direct(b) = &mut self.how else {
            return result;
        };
        match result {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let held = b.held().to_vec();
                let end = b.end() - held.len() as u64;
                set_flags(&self.file, b.flags | libc::O_APPEND)?;
                tracing::warn!(
                    error = %e,
                    "the access log's file system refused direct I/O; \
                     writing through the page cache"
                );
                self.how = cached(end);
                self.write(&held)
            }
            other => other,
        }
    }

    /// Through the page cache: starts the write-back of the last [`WRITE_BACK`] written and
    /// drops the one before. Both are advice: an error (a file system without them) changes
    /// nothing but the memory the log takes.
    #[cfg(target_os = "linux")]
    fn clean(&mut self) {
        let How::Cached {
            written,
            started,
            dropped,
        } = &mut self.how
        else {
            return;
        };
        if written.saturating_sub(*started) < WRITE_BACK {
            return;
        }
        let fd = self.file.as_raw_fd();
        let (Ok(start), Ok(len)) = (
            libc::off_t::try_from(*started),
            libc::off_t::try_from(*written - *started),
        ) else {
            return;
        };
        // SAFETY: plain system calls on a file descriptor this struct owns (open until it is
        // dropped) with integer arguments; no memory is passed.
        unsafe { libc::sync_file_range(fd, start, len, libc::SYNC_FILE_RANGE_WRITE) };
        if let (Ok(from), Ok(len)) = (
            libc::off_t::try_from(*dropped),
            libc::off_t::try_from(started.saturating_sub(*dropped)),
        ) {
            if len > 0 {
                // SAFETY: as above.
                unsafe { libc::posix_fadvise(fd, from, len, libc::POSIX_FADV_DONTNEED) };
            }
        }
        *dropped = *started;
        *started = *written;
    }

    /// Elsewhere the page cache is left to the kernel.
    #[cfg(not(target_os = "linux"))]
    fn clean(&mut self) {
        if let How::Cached {
            written, started, ..
        } = &mut self.how
        {
            *started = *written;
        }
    }
}

/// Writing through the page cache from `end` on.
fn cached(end: u64) -> How {
    How::Cached {
        written: end,
        started: end,
        dropped: end,
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "access log lines lost when the file was closed");
        }
    }
}

/// The file's flags for direct I/O (without `O_APPEND`, with `O_DIRECT`), set; the flags
/// without either, or `None` when the file system refuses direct I/O.
#[cfg(target_os = "linux")]
fn direct_flags(file: &File) -> Option<libc::c_int> {
    // SAFETY: fcntl on a file descriptor the caller owns, with integer arguments.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return None;
    }
    let flags = flags & !(libc::O_APPEND | O_DIRECT);
    set_flags(file, flags | O_DIRECT).ok()?;
    Some(flags)
}

#[cfg(not(target_os = "linux"))]
fn direct_flags(_: &File) -> Option<libc::c_int> {
    None
}

#[cfg(target_os = "linux")]
const O_DIRECT: libc::c_int = libc::O_DIRECT;
#[cfg(not(target_os = "linux"))]
const O_DIRECT: libc::c_int = 0;

fn set_flags(file: &File, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: as above.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Block {
    /// An empty block for a file `len` bytes long.
    fn at_end(len: u64, flags: libc::c_int) -> Block {
        let mem = vec![0u8; BLOCK + ALIGN];
        let at = mem.as_ptr().align_offset(ALIGN);
        let mut b = Block {
            mem,
            at,
            base: 0,
            len: 0,
            direct: 0,
            flushed: 0,
            lead: 0,
            since: None,
            flags,
        };
        b.seat(len);
        b
    }

    /// Makes the file's `end` where the next byte goes (the block is empty).
    fn seat(&mut self, end: u64) {
        self.base = end.next_multiple_of(ALIGN as u64);
        self.lead = (self.base - end) as usize;
        self.len = 0;
        self.direct = 0;
        self.flushed = 0;
        self.since = None;
    }

    fn end(&self) -> u64 {
        self.base - self.lead as u64 + self.len as u64
    }

    /// The bytes not yet in the file.
    fn held(&self) -> &[u8] {
        &self.mem[self.at + self.flushed..self.at + self.len]
    }

    /// Takes `bytes` into the block (and the file), advancing the slice past what it took: on
    /// an error, the slice is what was not taken.
    fn write(&mut self, file: &File, bytes: &mut &[u8]) -> io::Result<()> {
        if self.lead > 0 && !bytes.is_empty() {
            let n = self.lead.min(bytes.len());
            self.cached(file, &bytes[..n], self.base - self.lead as u64)?;
            self.lead -= n;
            *bytes = &bytes[n..];
        }
        while !bytes.is_empty() {
            let n = (BLOCK - self.len).min(bytes.len());
            let at = self.at + self.len;
            copy_streaming(&mut self.mem[at..at + n], &bytes[..n]);
            self.len += n;
            *bytes = &bytes[n..];
            if self.since.is_none() {
                self.since = Some(Instant::now());
            }
            if self.len == BLOCK {
                self.sync(file, false)?;
            }
        }
        Ok(())
    }

    /// Writes the block's whole pages not yet written directly, and with `all` the last,
    /// partial page through the page cache too; a full block makes way for the next one.
    /// On an error the held bytes are lost and writing goes on at the file's end — but for a
    /// refused direct write (`EINVAL`), which [`Output`] answers by writing them through the
    /// page cache.
    fn sync(&mut self, file: &File, all: bool) -> io::Result<()> {
        let result = self.try_sync(file, all);
        if result
            .as_ref()
            .is_err_and(|e| e.raw_os_error() != Some(libc::EINVAL))
        {
            let end = file.metadata().map_or(self.end(), |m| m.len());
            self.seat(end);
        }
        result
    }

    fn try_sync(&mut self, file: &File, all: bool) -> io::Result<()> {
        let size = file.metadata()?.len();
        let end = self.base + self.flushed as u64 - self.lead as u64;
        if size < end {
            // Truncated under the writer: the held bytes go at the new end.
            let held = self.held().to_vec();
            self.seat(size);
            self.write(file, &mut &held[..])?;
        }
        let pages = self.len / ALIGN * ALIGN;
        if pages > self.direct {
            let from = self.at + self.direct;
            let n = file.write_at(
                &self.mem[from..self.at + pages],
                self.base + self.direct as u64,
            )?;
            if n != pages - self.direct {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("a direct write of {} bytes wrote {n}", pages - self.direct),
                ));
            }
            self.direct = pages;
            self.flushed = self.flushed.max(pages);
        }
        if all && self.len > self.flushed {
            let at = self.base + self.flushed as u64;
            self.cached(file, self.held(), at)?;
            self.flushed = self.len;
        }
        if self.len == BLOCK {
            self.base += BLOCK as u64;
            self.len = 0;
            self.direct = 0;
            self.flushed = 0;
        }
        if self.flushed == self.len {
            self.since = None;
        }
        Ok(())
    }

    /// Writes `bytes` at `at` through the page cache (direct I/O off for the call).
    fn cached(&self, file: &File, bytes: &[u8], at: u64) -> io::Result<()> {
        set_flags(file, self.flags)?;
        let result = file.write_all_at(bytes, at);
        set_flags(file, self.flags | O_DIRECT)?;
        result
    }
}

/// Copies `from` into `to`, of the same length, past the processor's caches where it can
/// (see [`stream`]): the block is read next by the disk, not by the processor.
pub(super) fn copy_streaming(to: &mut [u8], from: &[u8]) {
    assert_eq!(
        to.len(),
        from.len(),
        "a streaming copy between different lengths"
    );
    // SAFETY: `to` is valid for writes of its length, which is `from`'s, and a `&mut`
    // cannot overlap `from`.
    unsafe { stream(to.as_mut_ptr(), from) }
}

/// Appends `from` to `to` past the processor's caches where it can (see [`stream`]).
pub(super) fn extend_streaming(to: &mut Vec<u8>, from: &[u8]) {
    to.reserve(from.len());
    // SAFETY: the reserve leaves at least `from.len()` bytes of spare capacity after the
    // length, which `stream` initialises in full before the length takes them in; `from`
    // cannot overlap `to`'s buffer while `to` is borrowed mutably.
    unsafe {
        stream(to.as_mut_ptr().add(to.len()), from);
        to.set_len(to.len() + from.len());
    }
}

/// Copies `from` to `to` with non-temporal stores (x86-64's `movntdq`, part of SSE2, which
/// every x86-64 processor has) for the whole 64-byte cache lines of `to`, and ordinary
/// stores for the part before the first and after the last. An ordinary store first fetches
/// its cache line and pushes out what the request path keeps there; the lines of a log go
/// to the disk and are not read again, so that fetch is all cost. Measured on the
/// benchmark VM, formatting into a small batch that stays in the cache and streaming it out
/// this way cost 0.990 of the log-off node's req/s, and 0.972 with ordinary stores
/// (docs/operations.md, Tuning). Elsewhere, an ordinary copy.
///
/// # Safety
///
/// `to` must be valid for writes of `from.len()` bytes and must not overlap `from`.
unsafe fn stream(to: *mut u8, from: &[u8]) {
    let n = from.len();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        let head = to.align_offset(64).min(n);
        let body = (n - head) / 64 * 64;
        // SAFETY (all below): every offset written is below `n`, which the caller
        // guarantees `to` has room for; the streamed stores go to `to + head + k * 16`,
        // 16-byte aligned as `to + head` is 64-byte aligned; the loads are unaligned ones
        // within `from`; the fence orders the streamed stores before any later store, such
        // as the lock release that hands the bytes to the writer.
        unsafe {
            std::ptr::copy_nonoverlapping(from.as_ptr(), to, head);
            let mut k = head;
            while k < head + body {
                let v = _mm_loadu_si128(from.as_ptr().add(k).cast::<__m128i>());
                _mm_stream_si128(to.add(k).cast::<__m128i>(), v);
                k += 16;
            }
            _mm_sfence();
            std::ptr::copy_nonoverlapping(from.as_ptr().add(k), to.add(k), n - k);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as the caller guarantees.
    unsafe {
        std::ptr::copy_nonoverlapping(from.as_ptr(), to, n);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The file holds exactly `want` (or the test says where it differs).
    fn same(path: &Path, want: &[u8]) {
        let got = std::fs::read(path).unwrap();
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        assert!(
            at.is_none() && got.len() == want.len(),
            "{} bytes in the file, {} wanted, first difference at {at:?}",
            got.len(),
            want.len()
        );
    }

    fn open(path: &Path) -> File {
        super::super::open(path).unwrap()
    }

    /// An output writing `path` by direct I/O, or `None` (the test is skipped, saying so)
    /// where the file system refuses it — a container's overlay file system may.
    fn direct(path: &Path) -> Option<Output> {
        let out = Output::new(open(path));
        if !out.direct() {
            eprintln!("skipped: {} refuses direct I/O", path.display());
            return None;
        }
        Some(out)
    }

    /// A directory on a file system with a page cache and direct I/O: the system's temporary
    /// directory, or the build's target directory when that is tmpfs.
    fn disk_dir() -> tempfile::TempDir {
        let tmp = std::env::temp_dir();
        if tmpfs(&tmp) {
            let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
            std::fs::create_dir_all(&target).unwrap();
            tempfile::tempdir_in(target).unwrap()
        } else {
            tempfile::tempdir_in(tmp).unwrap()
        }
    }

    /// Lines of assorted lengths, as many as make `len` bytes or a little more.
    fn lines(from: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = from;
        while out.len() < len {
            out.extend_from_slice(format!("line {n} {}\n", "x".repeat(n * 7 % 300)).as_bytes());
            n += 1;
        }
        out
    }

    /// The streaming copy copies exactly its bytes whatever the destination's alignment and
    /// the length: a part before the first cache line, whole lines, a part after the last,
    /// or only some of them; and appending keeps what was there.
    #[test]
    fn streaming_copies_every_alignment_and_length() {
        let from: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut mem = vec![0u8; 512];
        let base = mem.as_ptr().align_offset(64);
        for offset in 0..64 {
            for len in (0..=200).chain([255, 256, 257]) {
                mem.fill(0xee);
                let at = base + offset;
                copy_streaming(&mut mem[at..at + len], &from[..len]);
                assert_eq!(
                    &mem[at..at + len],
                    &from[..len],
                    "offset {offset}, length {len}"
                );
                assert!(
                    mem[..at].iter().all(|&b| b == 0xee),
                    "before, {offset}, {len}"
                );
                assert!(
                    mem[at + len..].iter().all(|&b| b == 0xee),
                    "after, {offset}, {len}"
                );
            }
        }
        let mut v = b"kept".to_vec();
        let mut want = v.clone();
        for len in [0, 1, 63, 64, 65, 200, 300] {
            extend_streaming(&mut v, &from[..len]);
            want.extend_from_slice(&from[..len]);
            assert_eq!(v, want, "after appending {len}");
        }
    }

    /// Whole blocks reach the file by direct I/O as soon as they fill, without entering the
    /// page cache; the rest waits until it is old enough, then goes too (whole pages
    /// directly, the last page through the page cache); writing goes on after that in the
    /// same block; dropping the output writes what it holds. The file opened with a length
    /// that is not a multiple of a page is appended to, byte for byte.
    #[test]
    fn direct_writes_keep_every_byte_in_order() {
        let dir = disk_dir();
        let path = dir.path().join("access.log");
        std::fs::write(&path, b"old\n").unwrap();
        let Some(mut out) = direct(&path) else { return };
        out.patience = Duration::from_secs(3600);
        let mut want = b"old\n".to_vec();
        let more = lines(0, 2 * BLOCK + BLOCK / 2);
        for chunk in more.chunks(100_003) {
            out.write(chunk).unwrap();
        }
        want.extend_from_slice(&more);
        assert_eq!(out.written(), want.len() as u64);
        // The first page's tail went through the page cache, then two whole blocks directly.
        let in_file = ALIGN + 2 * BLOCK;
        let resident = resident_pages(&path, in_file);
        assert!(
            resident <= 1 || tmpfs(dir.path()),
            "{resident} of {} pages in the page cache",
            in_file / ALIGN
        );
        same(&path, &want[..in_file]);

        // Young bytes wait; old ones are written.
        out.tick(Instant::now()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), in_file as u64);
        out.patience = Duration::ZERO;
        out.tick(Instant::now()).unwrap();
        same(&path, &want);
        // More in the same block, past the page written through the page cache.
        let later = lines(100_000, 10_000);
        out.write(&later).unwrap();
        want.extend_from_slice(&later);
        out.tick(Instant::now()).unwrap();
        same(&path, &want);
        let last = lines(200_000, BLOCK);
        out.write(&last).unwrap();
        want.extend_from_slice(&last);
        drop(out);
        same(&path, &want);
    }

    /// A file truncated under the writer (logrotate's copytruncate) gets the next bytes from
    /// its new end: no hole of zeros, nothing held back lost, and a new end that is not a
    /// multiple of a page is appended to.
    #[test]
    fn a_truncated_file_is_written_from_its_new_end() {
        let dir = disk_dir();
        let path = dir.path().join("access.log");
        let Some(mut out) = direct(&path) else { return };
        out.patience = Duration::ZERO;
        out.write(&lines(0, 10_000)).unwrap();
        out.flush().unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() >= 10_000);

        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let after = lines(1_000, 3 * ALIGN);
        out.write(&after).unwrap();
        out.flush().unwrap();
        same(&path, &after);

        // Truncated again, and something else wrote a few bytes there.
        std::fs::write(&path, b"copied away\n").unwrap();
        let again = lines(2_000, BLOCK + 1);
        out.write(&again).unwrap();
        out.flush().unwrap();
        let mut want = b"copied away\n".to_vec();
        want.extend_from_slice(&again);
        same(&path, &want);
        assert_eq!(out.written(), want.len() as u64);
    }

    /// A direct write the kernel refuses (here: memory not aligned for it) turns the output
    /// into one through the page cache, with the bytes it held written and none lost.
    #[test]
    fn a_refused_direct_write_falls_back_to_the_page_cache() {
        let dir = disk_dir();
        let path = dir.path().join("access.log");
        let Some(mut out) = direct(&path) else { return };
        let How::Direct(b) = &mut out.how else {
            unreachable!()
        };
        b.at += 1;
        let first = lines(0, BLOCK + 5_000);
        out.write(&first).unwrap();
        assert!(!out.direct(), "EINVAL made it write through the page cache");
        let second = lines(50_000, 20_000);
        out.write(&second).unwrap();
        drop(out);
        let mut want = first;
        want.extend_from_slice(&second);
        same(&path, &want);
    }

    /// Through the page cache (no direct I/O), the file keeps every byte written while the
    /// writer cleans the page cache behind it: what was written back a round ago is no longer
    /// resident (tmpfs, which has no write-back, is skipped), and a file opened with content
    /// is appended to.
    #[test]
    fn written_log_leaves_the_page_cache_and_keeps_every_byte() {
        let dir = disk_dir();
        let path = dir.path().join("access.log");
        std::fs::write(&path, b"old\n").unwrap();
        let mut out = Output {
            file: open(&path),
            how: cached(4),
            patience: FLUSH,
        };
        let chunk = vec![b'x'; WRITE_BACK as usize];
        let sync = out.file.try_clone().unwrap();
        for round in 1..=3u64 {
            out.write(&chunk).unwrap();
            let How::Cached {
                started, dropped, ..
            } = out.how
            else {
                unreachable!()
            };
            // Write-back of the round's range was started; the range before it is dropped.
            assert_eq!(started, 4 + round * WRITE_BACK);
            assert_eq!(dropped, 4 + (round - 1) * WRITE_BACK);
            if round == 2 {
                let resident = resident_pages(&path, WRITE_BACK as usize);
                let pages = WRITE_BACK as usize / 4096;
                assert!(
                    resident < pages / 2,
                    "{resident} of the first {pages} pages still cached"
                );
            }
            // Let the write-back finish, so that the next round's drop is not skipped.
            sync.sync_data().unwrap();
        }
        out.write(b"tail\n").unwrap();
        assert_eq!(out.written(), 4 + 3 * WRITE_BACK + 5);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, out.written());
        let (head, rest) = bytes.split_at(4);
        let (xs, tail) = rest.split_at(rest.len() - 5);
        assert_eq!((head, tail), (&b"old\n"[..], &b"tail\n"[..]));
        assert!(xs.iter().all(|&b| b == b'x'));
    }

    /// On tmpfs (which takes direct I/O since Linux 6.6 and refuses it before) every byte
    /// arrives either way. A file that is not a regular file gets plain writes.
    #[test]
    fn other_files_keep_every_byte() {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() && tmpfs(shm) {
            let dir = tempfile::tempdir_in(shm).unwrap();
            let path = dir.path().join("access.log");
            let mut out = Output::new(open(&path));
            let bytes = lines(0, 3 * BLOCK);
            out.write(&bytes).unwrap();
            drop(out);
            same(&path, &bytes);
        }
        let mut null = Output::new(open(Path::new("/dev/null")));
        assert!(matches!(null.how, How::Plain { .. }));
        null.write(&lines(0, BLOCK)).unwrap();
        null.flush().unwrap();
    }

    /// Whether a directory is on tmpfs (no direct I/O; its pages cannot be dropped, they are
    /// the file).
    fn tmpfs(dir: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        // SAFETY: a NUL-terminated path and a statfs buffer the call fills in.
        let ok = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) } == 0;
        // SAFETY: filled in by the successful call (zeroed otherwise).
        ok && unsafe { st.assume_init() }.f_type == libc::TMPFS_MAGIC
    }

    /// How many of the first `len` bytes' pages of a file are in the page cache (mincore).
    fn resident_pages(path: &Path, len: usize) -> usize {
        let file = File::open(path).unwrap();
        let pages = len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: a read-only shared mapping of `len` bytes of an open file at least that
        // long, passed to mincore with a vector of one byte per page, then unmapped; the
        // mapping is never read.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
            libc::munmap(addr, len);
        }
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }
}
