//! Consuming a `BPF_MAP_TYPE_RINGBUF` map from user space: its pages mapped into this process,
//! and epoll on the map fd to sleep until the kernel has written records.
//!
//! The kernel's layout (from the uapi documentation of ring buffers): page 0 holds the
//! consumer position (the only page user space writes), page 1 the producer position, and the
//! data area (`max_entries` bytes, a power of two) follows, mapped twice in a row so a record
//! that wraps around reads as one slice. Each record starts with an 8-byte header: its length
//! with a BUSY bit (still being written) and a DISCARD bit (to be skipped), then the record,
//! padded to 8 bytes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HEADER: usize = 8;

/// A mapped ring buffer and an epoll instance watching it.
#[derive(Debug)]
pub struct RingBuf {
    _map: OwnedFd,
    epoll: OwnedFd,
    consumer: *mut u8,
    producer: *mut u8,
    page: usize,
    size: usize,
}

// SAFETY: the mappings belong to this value alone; the kernel is the only other party, and
// every access to the shared positions goes through atomics.
unsafe impl Send for RingBuf {}

fn last_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl RingBuf {
    /// Maps the ring buffer `map` of `size` bytes (its `max_entries`).
    ///
    /// # Errors
    /// Returns the failing call (`mmap`, `epoll_create1`, `epoll_ctl`) and its errno.
    pub fn open(map: OwnedFd, size: u32) -> io::Result<Self> {
        let size = size as usize;
        if !size.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring buffer size {size} is not a power of two"),
            ));
        }
        // SAFETY: sysconf has no memory effects.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let fd = map.as_raw_fd();
        // SAFETY: a fresh shared mapping of the map fd; the kernel checks size and protection.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(last_error("mmap of the ring buffer's consumer page"));
        }
        // SAFETY: as above, read-only: the producer page and the data area mapped twice.
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page + 2 * size,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                page as libc::off_t,
            )
        };
        if producer == libc::MAP_FAILED {
            let e = last_error("mmap of the ring buffer's data pages");
            // SAFETY: unmapping the mapping made above.
            unsafe { libc::munmap(consumer, page) };
            return Err(e);
        }
        let cleanup = |e: io::Error| {
            // SAFETY: unmapping the mappings made above.
            unsafe {
                libc::munmap(consumer, page);
                libc::munmap(producer, page + 2 * size);
            }
            e
        };
        // SAFETY: epoll_create1 returns a new fd or -1.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(cleanup(last_error("epoll_create1")));
        }
        // SAFETY: ep is a new fd that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        // SAFETY: both fds are open; ev is a valid epoll_event.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(cleanup(last_error("epoll_ctl on the ring buffer")));
        }
        Ok(Self {
            _map: map,
            epoll,
            consumer: consumer.cast(),
            producer: producer.cast(),
            page,
            size,
        })
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page is mapped, page-aligned, and lives as long as self.
        unsafe { &*self.consumer.cast::<AtomicU64>() }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: as above for the producer page.
        unsafe { &*self.producer.cast::<AtomicU64>() }
    }

    /// Hands every complete record to `f`, oldest first, and frees its space. Returns how many
    /// records were read.
    pub fn consume(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mask = (self.size - 1) as u64;
        let mut cons = self.consumer_pos().load(Ordering::Acquire);
        let mut n = 0;
        loop {
            let prod = self.producer_pos().load(Ordering::Acquire);
            if cons >= prod {
                break;
            }
            let off = (cons & mask) as usize;
            // SAFETY: off < size and the data area is mapped twice (2 * size bytes), so the
            // header and a record of up to `size` bytes are inside the mapping.
            let header = unsafe { &*self.producer.add(self.page + off).cast::<AtomicU32>() };
            let len = header.load(Ordering::Acquire);
            if len & BUSY != 0 {
                break;
            }
            let body = (len & !(BUSY | DISCARD)) as usize;
            if len & DISCARD == 0 && body <= self.size {
                // SAFETY: as above.
                let data = unsafe {
                    std::slice::from_raw_parts(self.producer.add(self.page + off + HEADER), body)
                };
                f(data);
                n += 1;
            }
            cons += ((body + HEADER + 7) & !7) as u64;
            self.consumer_pos().store(cons, Ordering::Release);
        }
        n
    }

    /// Waits up to `timeout_ms` (-1: forever) for records, then consumes them as
    /// [`RingBuf::consume`] does.
    ///
    /// # Errors
    /// Returns the `epoll_wait` error (EINTR is not an error: nothing is read).
    pub fn poll(&mut self, timeout_ms: i32, f: impl FnMut(&[u8])) -> io::Result<usize> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: one valid epoll_event to fill.
        let r = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), &mut ev, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(io::Error::new(e.kind(), format!("epoll_wait: {e}")));
        }
        Ok(self.consume(f))
    }

    /// The epoll fd (for callers that wait on several sources).
    pub fn epoll_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.epoll.as_fd()
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what open() mapped.
        unsafe {
            libc::munmap(self.consumer.cast(), self.page);
            libc::munmap(self.producer.cast(), self.page + 2 * self.size);
        }
    }
}
