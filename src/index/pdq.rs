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
//! **Choosing per query.** Enumerating substring neighbourhoods grows
//! combinatorially with the radius; past a point reading every code (a few
//! GB/s per core, popcount per word) is cheaper, so each query estimates
//! both costs and takes the smaller.

use rayon::prelude::*;

use super::huge;

/// Marks the end of a bucket list and empty slots.
const NIL: u32 = u32::MAX;

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
    /// `heads[t][value]`: first slot whose substring `t` equals `value`.
    heads: Vec<Vec<u32>>,
    /// `next[t][slot]`: the following slot in the same bucket.
    next: Vec<Vec<u32>>,
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
        for (t, sub) in self.subs.iter().enumerate() {
            let next = &mut self.next[t];
            if next.len() <= slot as usize {
                huge::reserve(next, slot as usize + 1);
                next.resize(slot as usize + 1, NIL);
            }
            let head = &mut self.heads[t][sub.extract(code) as usize];
            next[slot as usize] = *head;
            *head = slot;
        }
    }

    fn remove(&mut self, slot: u32, code: &[u64; 4]) {
        for (t, sub) in self.subs.iter().enumerate() {
            let next = &mut self.next[t];
            let head = &mut self.heads[t][sub.extract(code) as usize];
            if *head == slot {
                *head = next[slot as usize];
            } else {
                let mut cur = *head;
                while cur != NIL {
                    let after = next[cur as usize];
                    if after == slot {
                        next[cur as usize] = next[slot as usize];
                        break;
                    }
                    cur = after;
                }
            }
            next[slot as usize] = NIL;
        }
    }

    /// Calls `visit` with every slot sharing a bucket with a value within
    /// `sub_radius` of the query's substring, for every substring. A slot may
    /// be visited more than once (from different substrings).
    fn candidates(&self, query: &[u64; 4], sub_radius: u32, mut visit: impl FnMut(u32)) {
        for (t, sub) in self.subs.iter().enumerate() {
            let heads = &self.heads[t];
            let next = &self.next[t];
            let mut walk = |value: u32| {
                let mut slot = heads[value as usize];
                while slot != NIL {
                    visit(slot);
                    slot = next[slot as usize];
                }
            };
            for_each_within(sub.extract(query), sub.bits, sub_radius, &mut walk);
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

/// `(first + i, distance)` for every `codes[i]` within `radius` of `query`.
///
/// Baseline x86-64 has no `popcnt` instruction, and the bit-twiddling
/// fallback is several times slower, so CPUs that have it run a build of the
/// same loop that uses it.
fn scan(codes: &[[u64; 4]], query: &[u64; 4], radius: u32, first: u32) -> Vec<(u32, u32)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: `scan_popcnt` only requires the `popcnt` instruction,
            // whose presence was checked at run time just above.
            return unsafe { scan_popcnt(codes, query, radius, first) };
        }
    }
    scan_portable(codes, query, radius, first)
}

/// [`scan_portable`] compiled with `popcnt`.
///
/// # Safety
/// The CPU must support `popcnt`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn scan_popcnt(
    codes: &[[u64; 4]],
    query: &[u64; 4],
    radius: u32,
    first: u32,
) -> Vec<(u32, u32)> {
    scan_portable(codes, query, radius, first)
}

#[inline(always)]
fn scan_portable(codes: &[[u64; 4]], query: &[u64; 4], radius: u32, first: u32) -> Vec<(u32, u32)> {
    let mut hits = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let d = distance(code, query);
        if d <= radius {
            hits.push((first + i as u32, d));
        }
    }
    hits
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
    pub fn insert(&mut self, slot: u32, code: [u64; 4]) {
        assert!(slot != NIL, "slot u32::MAX is reserved");
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
        // Buckets probed, each costing a cache miss, plus the expected
        // candidates, each a code fetch and compare. Measured on a 2-core
        // machine: about 65 ns per probe or candidate, and about 1 ns per
        // code for a scan split across cores (sequential, four popcounts).
        let mut probes = 0.0;
        let mut candidates = 0.0;
        for s in &self.tables.subs {
            let ball = ball_size(s.bits, sub_radius);
            probes += ball;
            candidates += ball * self.len as f64 / f64::from(1u32 << s.bits);
        }
        let mih = probes + candidates;
        let scan = self.codes.len() as f64 / 60.0;
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
                // Split across cores: one query at radius 64 over 10M codes
                // reads 320 MB, which one core cannot stream fast enough.
                let chunks: Vec<Vec<(u32, u32)>> = self
                    .codes
                    .par_chunks(SCAN_CHUNK)
                    .enumerate()
                    .map(|(i, chunk)| {
                        let mut found = scan(chunk, query, radius, (i * SCAN_CHUNK) as u32);
                        found.retain(|&(slot, _)| self.contains(slot));
                        found
                    })
                    .collect();
                hits = chunks.concat();
            }
            Strategy::MultiIndex => {
                let sub_radius = radius / self.tables.m();
                self.tables.candidates(query, sub_radius, |slot| {
                    let d = distance(&self.codes[slot as usize], query);
                    if d <= radius {
                        hits.push((slot, d));
                    }
                });
                // A code can be reached through several substrings.
                hits.sort_unstable();
                hits.dedup();
            }
        }
        hits.sort_unstable_by_key(|&(slot, d)| (d, slot));
        hits
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
    use super::{distance, PdqIndex, Strategy as Search};
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
