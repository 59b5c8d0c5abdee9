//! Transparent huge pages for the index's large arrays.
//!
//! A PDQ query probes a few thousand random places in arrays of hundreds of
//! megabytes. With 4 KiB pages nearly every probe also misses the TLB and
//! walks the page tables; with 2 MiB pages the walk mostly disappears, which
//! measurably cuts the tail latency. Linux often enables huge pages only for
//! memory that asks for them (`madvise` mode), so the arrays ask, before
//! they are first touched (pages faulted in afterwards come in huge; pages
//! already present would wait for a background collapse).
//!
//! Elsewhere, and for small arrays, this does nothing.

/// Arrays under this size are left alone.
const MIN_BYTES: usize = 4 << 20;

/// An empty vector with room for `capacity` elements, its memory advised.
pub(crate) fn with_capacity<T>(capacity: usize) -> Vec<T> {
    let v = Vec::with_capacity(capacity);
    advise(&v);
    v
}

/// Makes room for `needed` elements in `v` (at least doubling, so growth
/// stays amortised linear) and advises any new memory.
pub(crate) fn reserve<T>(v: &mut Vec<T>, needed: usize) {
    if needed <= v.capacity() {
        return;
    }
    let target = needed.max(v.capacity().saturating_mul(2)).max(1024);
    v.reserve_exact(target - v.len());
    advise(v);
}

// SAFETY: `madvise` on whole pages inside the vector's own allocation
// (proved at the block).
#[allow(unsafe_code)]
#[cfg(target_os = "linux")]
fn advise<T>(v: &Vec<T>) {
    let bytes = v.capacity().saturating_mul(std::mem::size_of::<T>());
    if bytes < MIN_BYTES {
        return;
    }
    const PAGE: usize = 4096;
    let start = v.as_ptr() as usize;
    let first = start.div_ceil(PAGE) * PAGE;
    let end = (start + bytes) / PAGE * PAGE;
    if end <= first {
        return;
    }
    // SAFETY: `[first, end)` is rounded inwards to whole pages, so it lies
    // inside the vector's own allocation of `bytes` bytes starting at
    // `start`. MADV_HUGEPAGE only tells the kernel how to back those pages;
    // it never changes their contents, mapping or validity, so no Rust
    // reference into the vector is affected. Failure (an old kernel, huge
    // pages disabled) leaves ordinary pages, so the result is ignored.
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise<T>(_v: &Vec<T>) {}

#[cfg(test)]
mod tests {
    #[test]
    fn reserve_grows_geometrically_and_keeps_contents() {
        let mut v: Vec<u64> = super::with_capacity(1 << 20);
        v.extend(0..10);
        super::reserve(&mut v, (1 << 20) + 1);
        assert!(v.capacity() >= 2 << 20);
        assert_eq!(v[..10], (0..10).collect::<Vec<_>>()[..]);
        let cap = v.capacity();
        super::reserve(&mut v, 5);
        assert_eq!(v.capacity(), cap);
    }
}
