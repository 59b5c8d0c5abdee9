//! Radius search over 256-bit PDQ codes: multi-index hashing with a linear
//! scan for the cases where scanning is cheaper.
//!
//! **Multi-index hashing** (Norouzi, Punjani, Fleet 2012): split the 256 bits
//! into `m` substrings. If two codes are within distance `r`, then by
//! pigeonhole at least one pair of corresponding substrings is within
//! `⌊r/m⌋`. So for each substring we enumerate every value within that
//! radius of the query's substring, look it up, and verify the candidates
//! against the full code. With substrings of about `log2 N` bits each bucket
//! holds about one entry, and at radius 31 this reads a few thousand buckets
//! instead of N codes.
//!
//! **Layout.** Entries are addressed by a dense `u32` slot that the caller
//! chooses (the store hands them out), so the index needs no id maps:
//! `codes[slot]` is the code, and for each substring `t` a direct-indexed
//! head array `heads[t][value]` starts a singly linked list threaded through
//! `next[t][slot]`. Adding or removing an entry touches `m` lists and never
//! rebuilds anything. At 10M entries with `m = 11` that is 32 bytes of code
//! and 88 bytes of lists and heads per entry.
//!
//! **Latency.** A query is a few thousand independent cache misses, so it
//! is fast only if many are in flight at once: the lookups are batched and
//! prefetched in stages (see `Tables::candidates`), and each link carries
//! a bit saying whether its list goes on (see `MORE`), which spares the
//! miss on a list's last link.
//!
//! **Choosing per query.** Enumerating substring neighbourhoods grows
//! combinatorially with the radius; past a point reading every code (a few
//! GB/s per core, popcount per word) is cheaper, so each query estimates
//! both costs and takes the smaller.

use rayon::prelude::*;

use super::huge;

// A *link* (an entry of `heads` or `next`) is either NIL or a slot, with
// MORE set if that slot has a successor in its list.

/// Marks the end of a bucket list and empty slots.
const NIL: u32 = u32::MAX;

/// Set in a link whose slot has a successor in its list.
///
/// A search visiting a slot must know whether its list goes on, and
/// reading `next[t][slot]` to find out is one more cache miss per
/// candidate, as many again as the codes themselves, though most lists end
/// after their first entry. Keeping that bit in the link that leads to the
/// slot (already read) skips the miss for every last entry: about 12%
/// faster at radius 31.
const MORE: u32 = 1 << 31;

/// The slot bits of a link.
const SLOT_MASK: u32 = MORE - 1;

/// The largest slot the index can hold: the top bit of a link is `MORE`,
/// and `MORE | SLOT_MASK` is `NIL`. (Slots index the codes directly, so
/// slots that high would need 64 GiB of codes anyway.)
pub const MAX_SLOT: u32 = MORE - 2;

/// Probes enumerated before their heads are read (see
/// [`Tables::candidates`]). Each batch starts and drains the prefetch
/// pipelines once, so batches should be large; this one holds a whole
/// radius-31 query at 10M entries (about 3,300 probes), and the scratch it
/// needs (tens of KiB) still fits in L2. Measured: 1,024 was about 10%
/// slower on clustered data, 8,192 no faster.
const PROBE_BATCH: usize = 4096;

/// How many probes ahead the heads are prefetched. Anything from 8 to 64
/// measured the same; the probes are cheap to step through, so the
/// lookahead needs to be a few dozen to cover a DRAM miss.
const HEAD_AHEAD: usize = 32;

/// How many candidates ahead their code and link are prefetched. Each
/// candidate costs one or two misses and some arithmetic, so a short
/// lookahead already covers the latency; 32 was 15% slower than 8
/// (prefetches stall once the CPU's miss buffers are full, and then hold
/// up the loads the loop needs now), 4 slightly slower.
const VISIT_AHEAD: usize = 8;

/// Per-thread buffers for [`Tables::candidates`], reused across queries so
/// a query allocates nothing but its answer.
#[derive(Default)]
struct Scratch {
    /// `(table, value)` probes of the current batch.
    probes: Vec<(u32, u32)>,
    /// `(table, link)` candidates of the current round.
    work: Vec<(u32, u32)>,
    /// The next round's candidates, being built.
    spare: Vec<(u32, u32)>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Asks the CPU to start loading `value`'s cache line into L1.
// SAFETY: a prefetch hint of a live reference's address (see the block).
#[allow(unsafe_code)]
#[inline(always)]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has. A
    // prefetch is only a hint: it never faults and has no architectural
    // effect (here the address is even that of a live reference).
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// One of the `m` substrings: where it starts in the 256-bit code and how long it is.
#[derive(Clone, Copy, Debug)]
struct Substring {
    offset: u32,
    bits: u32,
}

impl Substring {
    /// The substring's value in `code` (bits numbered from the most significant).
    #[inline(always)]
    fn extract(self, code: &[u64; 4]) -> u32 {
        let word = (self.offset / 64) as usize;
        let shift = self.offset % 64;
        // Two adjacent words as one 128-bit window; a substring is ≤ 32 bits.
        let hi = u128::from(code[word]) << 64;
        let lo = code.get(word + 1).map_or(0, |&w| u128::from(w));
        let window = (hi | lo) << shift;
        (window >> (128 - self.bits)) as u32
    }
}

/// The multi-index tables for one substring layout.
struct Tables {
    subs: Vec<Substring>,
    /// `heads[t][value]`: the link to the first slot whose substring `t`
    /// equals `value`.
    heads: Vec<Vec<u32>>,
    /// `next[t][slot]`: the link to the following slot in the same bucket.
    next: Vec<Vec<u32>>,
}

/// Where the link to the entry after `prev` in bucket `value` of one table
/// is kept: in `next[prev]`, or in the bucket's head when `prev` is `None`.
#[inline(always)]
fn link_at<'a>(
    heads: &'a mut [u32],
    next: &'a mut [u32],
    value: u32,
    prev: Option<u32>,
) -> &'a mut u32 {
    match prev {
        None => &mut heads[value as usize],
        Some(p) => &mut next[p as usize],
    }
}

impl Tables {
    fn new(m: u32, expected: usize) -> Self {
        let subs = split(m);
        let heads = subs
            .iter()
            .map(|s| {
                let mut h = huge::with_capacity(1usize << s.bits);
                h.resize(1usize << s.bits, NIL);
                h
            })
            .collect();
        let next = subs.iter().map(|_| huge::with_capacity(expected)).collect();
        Tables { subs, heads, next }
    }

    fn m(&self) -> u32 {
        self.subs.len() as u32
    }

    fn insert(&mut self, slot: u32, code: &[u64; 4]) {
        debug_assert!(slot <= MAX_SLOT);
        for (t, sub) in self.subs.iter().enumerate() {
            let next = &mut self.next[t];
            if next.len() <= slot as usize {
                huge::reserve(next, slot as usize + 1);
                next.resize(slot as usize + 1, NIL);
            }
            let head = &mut self.heads[t][sub.extract(code) as usize];
            next[slot as usize] = *head;
            *head = if *head == NIL { slot } else { slot | MORE };
        }
    }

    fn remove(&mut self, slot: u32, code: &[u64; 4]) {
        for (t, sub) in self.subs.iter().enumerate() {
            let heads = &mut self.heads[t];
            let next = &mut self.next[t];
            let value = sub.extract(code);
            // The two entries before `slot` (None: the list's start): when
            // `slot` was last, its predecessor becomes last, and the link
            // leading to that predecessor loses its MORE.
            let mut before: Option<u32> = None;
            let mut prev: Option<u32> = None;
            let mut cur = heads[value as usize];
            while cur & SLOT_MASK != slot {
                debug_assert!(cur != NIL, "slot {slot} missing from its list");
                before = prev;
                prev = Some(cur & SLOT_MASK);
                cur = next[cur as usize & SLOT_MASK as usize];
            }
            let after = next[slot as usize];
            *link_at(heads, next, value, prev) = after;
            if after == NIL && prev.is_some() {
                *link_at(heads, next, value, before) &= !MORE;
            }
            next[slot as usize] = NIL;
        }
    }

    /// Calls `visit` with every slot sharing a bucket with a value within
    /// `sub_radius` of the query's substring, for every substring. A slot may
    /// be visited more than once (from different substrings). `codes` is
    /// only read to prefetch the codes `visit` is about to compare.
    ///
    /// Every probe is a cache miss into a head array of tens of megabytes,
    /// and every candidate one or two more (its code, and its link if its
    /// list goes on). Walking one bucket after the other (head, then code
    /// and link, then the next bucket) waits on DRAM about one miss at a
    /// time: the branch on "list ends here" is unpredictable, and each
    /// mispredict throws away the loads the CPU had started ahead. Instead
    /// the probes are batched and handled in stages, each a simple loop
    /// that prefetches a fixed distance ahead of itself, so a dozen or more
    /// misses are in flight at once (about 3x faster at radius 31):
    ///
    /// 1. enumerate up to [`PROBE_BATCH`] `(table, value)` probes;
    /// 2. read their heads, keeping the non-empty ones ([`Tables::gather`]);
    /// 3. visit those slots, all the batch's lists in lockstep, one round
    ///    per list position, until every list has ended ([`Tables::walk`]).
    ///
    /// Buckets hold about one entry, so stage 3 shrinks fast after its
    /// first round. The batch bounds the scratch memory however large the
    /// radius.
    fn candidates(
        &self,
        codes: &[[u64; 4]],
        query: &[u64; 4],
        sub_radius: u32,
        scratch: &mut Scratch,
        visit: &mut impl FnMut(u32),
    ) {
        let Scratch {
            probes,
            work,
            spare,
        } = scratch;
        probes.clear();
        for (t, sub) in self.subs.iter().enumerate() {
            for_each_within(sub.extract(query), sub.bits, sub_radius, &mut |value| {
                probes.push((t as u32, value));
                if probes.len() == PROBE_BATCH {
                    self.gather(probes, work);
                    self.walk(codes, work, spare, visit);
                    probes.clear();
                }
            });
        }
        self.gather(probes, work);
        self.walk(codes, work, spare, visit);
        probes.clear();
    }

    /// Stage 2 of [`Tables::candidates`]: replaces `work` with the
    /// `(table, link)` of every non-empty bucket among `probes`.
    ///
    /// Without a branch on the head's value (an empty bucket is written and
    /// then overwritten), so a mispredicted "empty?" never discards the
    /// loads issued for the following probes.
    fn gather(&self, probes: &[(u32, u32)], work: &mut Vec<(u32, u32)>) {
        work.clear();
        work.resize(probes.len(), (0, NIL));
        let mut kept = 0;
        for (i, &(t, value)) in probes.iter().enumerate() {
            if let Some(&(t, value)) = probes.get(i + HEAD_AHEAD) {
                prefetch(&self.heads[t as usize][value as usize]);
            }
            let link = self.heads[t as usize][value as usize];
            work[kept] = (t, link);
            kept += usize::from(link != NIL);
        }
        work.truncate(kept);
    }

    /// Stage 3 of [`Tables::candidates`]: visits the slot of every link in
    /// `work` and the rest of its list, one list position per round, and
    /// leaves `work` empty. `spare` is only scratch for the next round.
    fn walk(
        &self,
        codes: &[[u64; 4]],
        work: &mut Vec<(u32, u32)>,
        spare: &mut Vec<(u32, u32)>,
        visit: &mut impl FnMut(u32),
    ) {
        while !work.is_empty() {
            spare.clear();
            spare.resize(work.len(), (0, NIL));
            let mut kept = 0;
            for (i, &(t, link)) in work.iter().enumerate() {
                if let Some(&(t, link)) = work.get(i + VISIT_AHEAD) {
                    let slot = (link & SLOT_MASK) as usize;
                    prefetch(&codes[slot]);
                    if link & MORE != 0 {
                        prefetch(&self.next[t as usize][slot]);
                    }
                }
                let slot = link & SLOT_MASK;
                visit(slot);
                // A select, not a branch (see `gather`): when the list ends
                // here this reads the link of slot 0 instead, a line that
                // stays cached, and discards it.
                let more = link & MORE != 0;
                let after = self.next[t as usize][if more { slot as usize } else { 0 }];
                let after = if more { after } else { NIL };
                spare[kept] = (t, after);
                kept += usize::from(after != NIL);
            }
            spare.truncate(kept);
            std::mem::swap(work, spare);
        }
    }

    /// Bytes held by the tables.
    fn bytes(&self) -> usize {
        let heads: usize = self.heads.iter().map(|h| h.capacity() * 4).sum();
        let next: usize = self.next.iter().map(|n| n.capacity() * 4).sum();
        heads + next
    }
}

/// Splits 256 bits into `m` nearly equal substrings (longer ones first).
fn split(m: u32) -> Vec<Substring> {
    let base = 256 / m;
    let longer = 256 % m;
    let mut offset = 0;
    (0..m)
        .map(|i| {
            let bits = base + u32::from(i < longer);
            let s = Substring { offset, bits };
            offset += bits;
            s
        })
        .collect()
}

/// Calls `f` with every `bits`-bit value within Hamming distance `radius` of
/// `value` (including `value` itself), each exactly once.
fn for_each_within(value: u32, bits: u32, radius: u32, f: &mut impl FnMut(u32)) {
    fn flip(value: u32, from: u32, bits: u32, left: u32, f: &mut impl FnMut(u32)) {
        f(value);
        if left == 0 {
            return;
        }
        for b in from..bits {
            flip(value ^ (1 << b), b + 1, bits, left - 1, f);
        }
    }
    flip(value, 0, bits, radius.min(bits), f);
}

/// Number of `bits`-bit values within `radius` of a given one.
fn ball_size(bits: u32, radius: u32) -> f64 {
    let mut total = 0.0;
    let mut c = 1.0; // C(bits, k)
    for k in 0..=radius.min(bits) {
        total += c;
        c = c * f64::from(bits - k) / f64::from(k + 1);
    }
    total
}

/// Codes per parallel scan task (8 MiB of codes).
const SCAN_CHUNK: usize = 1 << 18;

/// Codes compared against every query of a batch before moving on (128
/// KiB: stays in L2 while each query reads it).
const SCAN_BLOCK: usize = 4096;

/// Pushes `(first + i, distance)` onto `out[q]` for every `codes[i]` within
/// `radius` of `queries[q]`. With several queries the codes are walked in
/// L2-sized blocks, each compared against every query before the next is
/// read, so a batch costs one pass over memory instead of one per query.
///
/// Baseline x86-64 has no `popcnt` instruction, and the bit-twiddling
/// fallback is several times slower, so CPUs that have it run a build of the
/// same loop that uses it.
// SAFETY: the one unsafe block calls the `popcnt` build only after
// checking at run time that the CPU has it (see the comment on the block).
#[allow(unsafe_code)]
fn scan(
    codes: &[[u64; 4]],
    queries: &[[u64; 4]],
    radius: u32,
    first: u32,
    out: &mut [Vec<(u32, u32)>],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: `scan_popcnt` only requires the `popcnt` instruction,
            // whose presence was checked at run time just above.
            return unsafe { scan_popcnt(codes, queries, radius, first, out) };
        }
    }
    scan_portable(codes, queries, radius, first, out)
}

/// [`scan_portable`] compiled with `popcnt`.
///
/// # Safety
/// The CPU must support `popcnt`.
// SAFETY: `unsafe` only because `#[target_feature]` functions must be on
// Rust 1.85; the body calls safe code only, and the one caller checks for
// `popcnt` first.
#[allow(unsafe_code)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn scan_popcnt(
    codes: &[[u64; 4]],
    queries: &[[u64; 4]],
    radius: u32,
    first: u32,
    out: &mut [Vec<(u32, u32)>],
) {
    scan_portable(codes, queries, radius, first, out)
}

#[inline(always)]
fn scan_portable(
    codes: &[[u64; 4]],
    queries: &[[u64; 4]],
    radius: u32,
    first: u32,
    out: &mut [Vec<(u32, u32)>],
) {
    for (b, block) in codes.chunks(SCAN_BLOCK).enumerate() {
        let base = first + (b * SCAN_BLOCK) as u32;
        for (query, hits) in queries.iter().zip(out.iter_mut()) {
            for (i, code) in block.iter().enumerate() {
                let d = distance(code, query);
                if d <= radius {
                    hits.push((base + i as u32, d));
                }
            }
        }
    }
}

/// Hamming distance between two codes.
#[inline(always)]
pub fn distance(a: &[u64; 4], b: &[u64; 4]) -> u32 {
    (a[0] ^ b[0]).count_ones()
        + (a[1] ^ b[1]).count_ones()
        + (a[2] ^ b[2]).count_ones()
        + (a[3] ^ b[3]).count_ones()
}

/// How a query was answered (for metrics and benchmarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Multi-index hashing.
    MultiIndex,
    /// A scan over every code.
    Scan,
}

/// An in-memory PDQ index over dense `u32` slots.
pub struct PdqIndex {
    codes: Vec<[u64; 4]>,
    /// One bit per slot: occupied.
    live: Vec<u64>,
    len: usize,
    tables: Tables,
    /// Entries the substring layout was chosen for; past four times that,
    /// [`PdqIndex::insert`] re-lays the tables out (see there).
    planned: usize,
}

impl Default for PdqIndex {
    fn default() -> Self {
        Self::with_expected_len(0)
    }
}

impl PdqIndex {
    /// An empty index whose substring count suits about `expected` entries.
    ///
    /// Substrings of about `log2(expected)` bits keep buckets near one entry
    /// each; fewer, longer substrings make the head arrays (`2^bits` each)
    /// outgrow the entries. The layout is fixed for the index's life:
    /// re-create it (the store can rebuild it at start) if the list grows by
    /// orders of magnitude.
    pub fn with_expected_len(expected: usize) -> Self {
        PdqIndex {
            codes: huge::with_capacity(expected),
            live: Vec::new(),
            len: 0,
            tables: Tables::new(Self::substrings_for(expected), expected),
            planned: expected.max(1 << 16),
        }
    }

    /// The substring count for about `expected` entries.
    fn substrings_for(expected: usize) -> u32 {
        let log2 = (expected.max(1) as f64).log2().ceil() as u32;
        let bits = log2.clamp(16, 24);
        256u32.div_ceil(bits).clamp(11, 16)
    }

    /// Re-lays the tables out for the current size, if that changes the
    /// substring count: a list that grew from empty to millions through
    /// incremental adds would otherwise keep the short substrings (and
    /// crowded buckets) chosen for an empty index. Growth by four times
    /// between re-layouts keeps the total cost linear, like a growing `Vec`.
    fn grow_layout(&mut self) {
        self.planned = self.len.saturating_mul(2);
        let m = Self::substrings_for(self.planned);
        if m == self.tables.m() {
            return;
        }
        let mut tables = Tables::new(m, self.codes.len());
        for (slot, code) in self.codes.iter().enumerate() {
            if self.contains(slot as u32) {
                tables.insert(slot as u32, code);
            }
        }
        self.tables = tables;
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of substrings in the multi-index.
    pub fn substrings(&self) -> u32 {
        self.tables.m()
    }

    /// Whether `slot` holds an entry.
    pub fn contains(&self, slot: u32) -> bool {
        let s = slot as usize;
        self.live
            .get(s / 64)
            .is_some_and(|w| w >> (s % 64) & 1 == 1)
    }

    /// The code at `slot`, if occupied.
    pub fn get(&self, slot: u32) -> Option<[u64; 4]> {
        self.contains(slot).then(|| self.codes[slot as usize])
    }

    /// Puts `code` at `slot`, replacing what was there.
    ///
    /// # Panics
    /// If `slot` is above [`MAX_SLOT`].
    pub fn insert(&mut self, slot: u32, code: [u64; 4]) {
        assert!(slot <= MAX_SLOT, "slots above MAX_SLOT are reserved");
        if self.contains(slot) {
            self.remove(slot);
        }
        let s = slot as usize;
        if self.codes.len() <= s {
            huge::reserve(&mut self.codes, s + 1);
            self.codes.resize(s + 1, [0; 4]);
        }
        if self.live.len() <= s / 64 {
            self.live.resize(s / 64 + 1, 0);
        }
        self.codes[s] = code;
        self.live[s / 64] |= 1 << (s % 64);
        self.tables.insert(slot, &code);
        self.len += 1;
        if self.len > self.planned.saturating_mul(4) {
            self.grow_layout();
        }
    }

    /// Removes the entry at `slot`; returns whether there was one.
    pub fn remove(&mut self, slot: u32) -> bool {
        if !self.contains(slot) {
            return false;
        }
        let s = slot as usize;
        let code = self.codes[s];
        self.tables.remove(slot, &code);
        self.live[s / 64] &= !(1 << (s % 64));
        self.codes[s] = [0; 4];
        self.len -= 1;
        true
    }

    /// Which strategy [`PdqIndex::search`] would use at `radius`.
    pub fn strategy(&self, radius: u32) -> Strategy {
        let m = self.tables.m();
        let sub_radius = radius / m;
        // Buckets probed plus the expected candidates, each about one cache
        // miss; the staged, prefetched walk overlaps many of them. Measured
        // at 10M uniform entries on a 2-core machine (time per query over
        // probes + candidates): 27 ns at radius 31, 34 ns at 44-54 and 29 ns
        // at 55, so about 30 ns per probe or candidate. A scan split across
        // the cores took 12-14 ms for 10M codes, about 1.4 ns per code.
        // MIH at radius 48 (sub-radius 4) measured 8-10 ms against the
        // scan's 12-15 ms, uniform or clustered, on one core instead of all
        // of them, so at 10M this switches to the scan at sub-radius 5
        // (radius 55). (At 65 ns per probe, before the walk was staged, the
        // switch came a sub-radius earlier.)
        const NS_PER_PROBE_OR_CANDIDATE: f64 = 30.0;
        const NS_PER_SCANNED_CODE: f64 = 1.4;
        let mut probes = 0.0;
        let mut candidates = 0.0;
        for s in &self.tables.subs {
            let ball = ball_size(s.bits, sub_radius);
            probes += ball;
            candidates += ball * self.len as f64 / f64::from(1u32 << s.bits);
        }
        let mih = (probes + candidates) * NS_PER_PROBE_OR_CANDIDATE;
        let scan = self.codes.len() as f64 * NS_PER_SCANNED_CODE;
        if mih <= scan {
            Strategy::MultiIndex
        } else {
            Strategy::Scan
        }
    }

    /// Every entry within `radius` of `query`, as `(slot, distance)`, nearest
    /// first (ties by slot).
    pub fn search(&self, query: &[u64; 4], radius: u32) -> Vec<(u32, u32)> {
        self.search_with(query, radius, self.strategy(radius))
    }

    /// [`PdqIndex::search`] with a forced strategy (tests and benchmarks).
    pub fn search_with(
        &self,
        query: &[u64; 4],
        radius: u32,
        strategy: Strategy,
    ) -> Vec<(u32, u32)> {
        let mut hits = Vec::new();
        match strategy {
            Strategy::Scan => {
                hits = self
                    .scan_all(std::slice::from_ref(query), radius)
                    .pop()
                    .unwrap_or_default();
            }
            Strategy::MultiIndex => {
                let sub_radius = radius / self.tables.m();
                let mut visit = |slot: u32| {
                    let d = distance(&self.codes[slot as usize], query);
                    if d <= radius {
                        hits.push((slot, d));
                    }
                };
                let mut run = |scratch: &mut Scratch| {
                    self.tables
                        .candidates(&self.codes, query, sub_radius, scratch, &mut visit);
                };
                SCRATCH.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut scratch) => run(&mut scratch),
                    // Only if a search ever ran inside another on this thread.
                    Err(_) => run(&mut Scratch::default()),
                });
                // A code can be reached through several substrings.
                hits.sort_unstable();
                hits.dedup();
            }
        }
        hits.sort_unstable_by_key(|&(slot, d)| (d, slot));
        hits
    }

    /// [`PdqIndex::search`] for many queries at one radius: the answers,
    /// in query order. Where the index would scan, one pass over the codes
    /// serves the whole batch (split across cores); otherwise the queries
    /// run side by side on all cores.
    pub fn search_batch(&self, queries: &[[u64; 4]], radius: u32) -> Vec<Vec<(u32, u32)>> {
        match self.strategy(radius) {
            Strategy::MultiIndex => queries
                .par_iter()
                .map(|q| self.search_with(q, radius, Strategy::MultiIndex))
                .collect(),
            Strategy::Scan => {
                let mut all = Vec::with_capacity(queries.len());
                // Batches of 64 keep each block's per-query hit lists small.
                for batch in queries.chunks(64) {
                    all.extend(self.scan_all(batch, radius));
                }
                all
            }
        }
    }

    /// Scans every code for every query, split across cores: one query at
    /// radius 64 over 10M codes reads 320 MB, which one core cannot stream
    /// fast enough. Answers nearest first.
    fn scan_all(&self, queries: &[[u64; 4]], radius: u32) -> Vec<Vec<(u32, u32)>> {
        let parts: Vec<Vec<Vec<(u32, u32)>>> = self
            .codes
            .par_chunks(SCAN_CHUNK)
            .enumerate()
            .map(|(i, chunk)| {
                let mut out = vec![Vec::new(); queries.len()];
                scan(chunk, queries, radius, (i * SCAN_CHUNK) as u32, &mut out);
                for found in &mut out {
                    found.retain(|&(slot, _)| self.contains(slot));
                }
                out
            })
            .collect();
        (0..queries.len())
            .map(|q| {
                let mut hits: Vec<(u32, u32)> =
                    parts.iter().flat_map(|p| p[q].iter().copied()).collect();
                hits.sort_unstable_by_key(|&(slot, d)| (d, slot));
                hits
            })
            .collect()
    }

    /// Approximate bytes of memory held by the index.
    pub fn memory_bytes(&self) -> usize {
        self.codes.capacity() * 32 + self.live.capacity() * 8 + self.tables.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substrings_cover_all_256_bits() {
        for m in 11..=16 {
            let subs = split(m);
            assert_eq!(subs.iter().map(|s| s.bits).sum::<u32>(), 256);
            assert_eq!(subs.last().map(|s| s.offset + s.bits), Some(256));
        }
    }

    #[test]
    fn extract_reads_bits_across_word_boundaries() {
        let code = [0x0000_0000_0000_0001, 0x8000_0000_0000_0000, 0, u64::MAX];
        let s = Substring {
            offset: 63,
            bits: 2,
        };
        assert_eq!(s.extract(&code), 0b11);
        let last = Substring {
            offset: 240,
            bits: 16,
        };
        assert_eq!(last.extract(&code), 0xFFFF);
    }

    #[test]
    fn neighbourhood_enumeration_is_exact() {
        let mut seen = Vec::new();
        for_each_within(0b1010, 6, 2, &mut |v| seen.push(v));
        let expected: Vec<u32> = (0..64u32)
            .filter(|v| (v ^ 0b1010).count_ones() <= 2)
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, expected);
        assert_eq!(ball_size(6, 2), expected.len() as f64);
    }

    /// Pseudo-random codes for tests (xorshift64).
    pub(super) fn codes(seed: u64, n: usize) -> Vec<[u64; 4]> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..n).map(|_| [next(), next(), next(), next()]).collect()
    }

    /// `(slot, distance)` of every live entry within `radius`, in search order.
    fn brute(idx: &PdqIndex, query: &[u64; 4], radius: u32) -> Vec<(u32, u32)> {
        let mut hits: Vec<(u32, u32)> = (0..idx.codes.len() as u32)
            .filter_map(|s| idx.get(s).map(|c| (s, distance(&c, query))))
            .filter(|&(_, d)| d <= radius)
            .collect();
        hits.sort_unstable_by_key(|&(s, d)| (d, s));
        hits
    }

    /// Checks every list of every table: each live slot sits exactly once
    /// in the bucket of its substring, and a link has MORE exactly when its
    /// slot has a successor.
    fn check_lists(idx: &PdqIndex) {
        let tables = &idx.tables;
        for (t, sub) in tables.subs.iter().enumerate() {
            let mut seen = vec![0u32; idx.codes.len()];
            for (value, &head) in tables.heads[t].iter().enumerate() {
                let mut link = head;
                while link != NIL {
                    let slot = link & SLOT_MASK;
                    let after = tables.next[t][slot as usize];
                    assert_eq!(link & MORE != 0, after != NIL, "table {t} slot {slot}");
                    let code = idx.get(slot).expect("listed slot is live");
                    assert_eq!(sub.extract(&code) as usize, value);
                    seen[slot as usize] += 1;
                    link = after;
                }
            }
            for (slot, &count) in seen.iter().enumerate() {
                assert_eq!(count, u32::from(idx.contains(slot as u32)), "slot {slot}");
            }
        }
    }

    #[test]
    fn long_lists_survive_removal_at_head_middle_and_tail() {
        let centre = codes(3, 1)[0];
        let mut idx = PdqIndex::default();
        // Slots 0-5 share every bucket (lists of six in every table; slot 5,
        // inserted last, is at the head); 6-9 differ from them in one bit,
        // so share all but one bucket; 10-11 are unrelated.
        for slot in 0..6 {
            idx.insert(slot, centre);
        }
        for slot in 6..10 {
            let mut c = centre;
            c[slot as usize % 4] ^= 1 << (slot * 7);
            idx.insert(slot, c);
        }
        for (slot, c) in (10..).zip(codes(4, 2)) {
            idx.insert(slot, c);
        }
        check_lists(&idx);
        let check = |idx: &PdqIndex| {
            check_lists(idx);
            for radius in [0, 1, 8, 40] {
                assert_eq!(
                    idx.search_with(&centre, radius, Strategy::MultiIndex),
                    brute(idx, &centre, radius),
                    "radius {radius}"
                );
            }
        };
        // Head, tail, middle, then the rest of that list down to one entry
        // and none; slots from the longer lists of 6-9 in between.
        for slot in [5, 0, 3, 7, 2, 9, 4, 1, 6, 8] {
            assert!(idx.remove(slot));
            check(&idx);
        }
        // Re-inserted slots go back to the heads of their lists.
        idx.insert(0, centre);
        idx.insert(3, centre);
        idx.insert(10, centre);
        check(&idx);
        assert_eq!(idx.search(&centre, 0), vec![(0, 0), (3, 0), (10, 0)]);
    }

    #[test]
    fn queries_over_several_probe_batches_match_brute_force() {
        // With 16 substrings of 16 bits, radius 48 is sub-radius 3: 697
        // probes per table, several batches. Near-duplicates of a few codes
        // make lists longer than one as well.
        let mut all = codes(5, 3000);
        let near: Vec<[u64; 4]> = all[..40]
            .iter()
            .flat_map(|c| (0..5).map(move |k| [c[0] ^ (1 << k), c[1], c[2], c[3] ^ k]))
            .collect();
        all.extend(near);
        let mut idx = PdqIndex::default();
        for (slot, c) in (0..).zip(&all) {
            idx.insert(slot * 2, *c);
        }
        assert_eq!(idx.substrings(), 16);
        let probes = ball_size(16, 48 / 16) * 16.0;
        assert!(probes > 2.0 * PROBE_BATCH as f64, "{probes} probes");
        let unrelated = codes(6, 5);
        let queries = all.iter().step_by(97).chain(&unrelated).copied();
        let mut scratch = Scratch::default();
        for q in queries {
            // Every bucket within the sub-radius is walked to its end, once,
            // across batch boundaries and with the scratch reused.
            let sub_radius = 3;
            let mut visited = Vec::new();
            idx.tables
                .candidates(&idx.codes, &q, sub_radius, &mut scratch, &mut |s| {
                    visited.push(s)
                });
            visited.sort_unstable();
            let mut expected = Vec::new();
            for sub in &idx.tables.subs {
                for (slot, c) in (0..).zip(&idx.codes) {
                    let near = (sub.extract(c) ^ sub.extract(&q)).count_ones() <= sub_radius;
                    if idx.contains(slot) && near {
                        expected.push(slot);
                    }
                }
            }
            expected.sort_unstable();
            assert_eq!(visited, expected);
            for radius in [32, 48, 63] {
                assert_eq!(
                    idx.search_with(&q, radius, Strategy::MultiIndex),
                    brute(&idx, &q, radius),
                    "radius {radius}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "MAX_SLOT")]
    fn slots_above_max_slot_are_refused() {
        PdqIndex::default().insert(MAX_SLOT + 1, [0; 4]);
    }

    #[test]
    fn insert_remove_and_replace() {
        let mut idx = PdqIndex::default();
        idx.insert(5, [1, 2, 3, 4]);
        idx.insert(9, [1, 2, 3, 5]);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.search(&[1, 2, 3, 4], 0), vec![(5, 0)]);
        assert_eq!(idx.search(&[1, 2, 3, 4], 2), vec![(5, 0), (9, 1)]);
        idx.insert(5, [9, 9, 9, 9]);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.search(&[1, 2, 3, 4], 2), vec![(9, 1)]);
        assert!(idx.remove(9));
        assert!(!idx.remove(9));
        assert!(idx.search(&[1, 2, 3, 4], 2).is_empty());
        assert_eq!(idx.get(5), Some([9, 9, 9, 9]));
    }
}

#[cfg(test)]
mod oracle {
    //! Property tests: every answer equals a brute-force scan.
    use super::{distance, PdqIndex, Strategy as Search, SCAN_BLOCK};
    use proptest::prelude::*;

    fn flip_bits(code: [u64; 4], positions: &[u8]) -> [u64; 4] {
        let mut c = code;
        for &p in positions {
            c[usize::from(p) / 64] ^= 1 << (p % 64);
        }
        c
    }

    fn code() -> impl Strategy<Value = [u64; 4]> {
        any::<[u64; 4]>()
    }

    /// Clustered data: a few centres, members within up to 60 bits of one.
    fn clustered(n: usize) -> impl Strategy<Value = Vec<[u64; 4]>> {
        (
            proptest::collection::vec(code(), 1..6),
            proptest::collection::vec(
                (
                    any::<usize>(),
                    proptest::collection::vec(any::<u8>(), 0..60),
                ),
                n,
            ),
        )
            .prop_map(|(centres, members)| {
                members
                    .into_iter()
                    .map(|(c, flips)| flip_bits(centres[c % centres.len()], &flips))
                    .collect()
            })
    }

    fn brute(codes: &[(u32, [u64; 4])], q: &[u64; 4], r: u32) -> Vec<(u32, u32)> {
        let mut hits: Vec<(u32, u32)> = codes
            .iter()
            .map(|&(s, c)| (s, distance(&c, q)))
            .filter(|&(_, d)| d <= r)
            .collect();
        hits.sort_unstable_by_key(|&(s, d)| (d, s));
        hits
    }

    fn check(
        codes: Vec<[u64; 4]>,
        queries: Vec<([u64; 4], Vec<u8>)>,
        radius: u32,
        remove_every: usize,
    ) {
        let mut idx = PdqIndex::with_expected_len(codes.len());
        let mut live = Vec::new();
        for (i, c) in codes.iter().enumerate() {
            // Sparse slots, as a store with retractions would leave them.
            let slot = (i * 3) as u32;
            idx.insert(slot, *c);
            live.push((slot, *c));
        }
        if remove_every > 0 {
            for (slot, _) in live.iter().step_by(remove_every) {
                assert!(idx.remove(*slot));
            }
            live = live
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % remove_every != 0)
                .map(|(_, x)| x)
                .collect();
        }
        assert_eq!(idx.len(), live.len());
        let mut batch = Vec::new();
        let mut answers = Vec::new();
        for (base, flips) in queries {
            // Queries near stored codes as well as random ones.
            let q = match live.first() {
                Some(&(_, c)) if flips.len() % 2 == 0 => flip_bits(c, &flips),
                _ => flip_bits(base, &flips),
            };
            let expected = brute(&live, &q, radius);
            assert_eq!(
                idx.search_with(&q, radius, Search::MultiIndex),
                expected,
                "MIH r={radius}"
            );
            assert_eq!(
                idx.search_with(&q, radius, Search::Scan),
                expected,
                "scan r={radius}"
            );
            assert_eq!(idx.search(&q, radius), expected, "auto r={radius}");
            batch.push(q);
            answers.push(expected);
        }
        assert_eq!(
            idx.search_batch(&batch, radius),
            answers,
            "batch r={radius}"
        );
    }

    #[test]
    fn batched_scans_over_many_blocks_and_queries_equal_single_searches() {
        let stored = super::tests::codes(7, 3 * SCAN_BLOCK + 17);
        let mut idx = PdqIndex::with_expected_len(stored.len());
        for (i, c) in stored.iter().enumerate() {
            idx.insert(i as u32, *c);
        }
        for slot in (0..stored.len() as u32).step_by(5) {
            idx.remove(slot);
        }
        // 70 queries: more than one batch of 64; half near stored codes.
        let queries: Vec<[u64; 4]> = super::tests::codes(8, 70)
            .into_iter()
            .enumerate()
            .map(|(i, q)| {
                if i % 2 == 0 {
                    flip_bits(stored[i * 97], &[1, 2, 3, 200])
                } else {
                    q
                }
            })
            .collect();
        for radius in [64, 100, 128] {
            assert_eq!(idx.strategy(radius), Search::Scan);
            let single: Vec<_> = queries
                .iter()
                .map(|q| idx.search_with(q, radius, Search::Scan))
                .collect();
            assert_eq!(idx.search_batch(&queries, radius), single, "r={radius}");
            assert!(single.iter().any(|hits| !hits.is_empty()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn uniform_codes_match_brute_force(
            codes in proptest::collection::vec(code(), 0..400),
            queries in proptest::collection::vec((code(), proptest::collection::vec(any::<u8>(), 0..80)), 1..6),
            radius in 0u32..=128,
            remove_every in 0usize..5,
        ) {
            check(codes, queries, radius, remove_every);
        }

        #[test]
        fn clustered_codes_match_brute_force(
            codes in clustered(600),
            queries in proptest::collection::vec((code(), proptest::collection::vec(any::<u8>(), 0..80)), 1..6),
            radius in 0u32..=128,
            remove_every in 0usize..5,
        ) {
            check(codes, queries, radius, remove_every);
        }
    }

    #[test]
    fn every_radius_on_one_clustered_set() {
        let mut state = 7u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let centre = [next(), next(), next(), next()];
        let codes: Vec<[u64; 4]> = (0..2000)
            .map(|_| {
                let flips: Vec<u8> = (0..next() % 70).map(|_| next() as u8).collect();
                flip_bits(centre, &flips)
            })
            .collect();
        for radius in 0..=128 {
            let q = flip_bits(centre, &[(radius % 256) as u8, 3, 200]);
            check(codes.clone(), vec![(q, Vec::new())], radius, 0);
        }
    }
}
