//! The Jarosz box filter and the 64×64 decimation, bit-identical to the reference.
//!
//! The reference blurs a luma plane with two rounds of (box along rows, box along
//! columns), then samples 64×64 pixels at the centres of a 64×64 grid. Each box
//! is a running sum: `sum += in[right]; sum -= in[left]; out = sum / count`, in
//! `f32`, in that order. Floating-point addition is not associative, so we keep
//! that exact sequence for every output value, and change only *which* values
//! are computed and *how many run side by side*:
//!
//! * Along columns, every column runs the same sequence at the same step, so we
//!   walk the plane row by row and update all columns at once. This turns the
//!   reference's strided walk (slow at power-of-two widths, where each step hits
//!   the same cache set) into contiguous loops the compiler vectorises. Each SIMD
//!   lane performs exactly the scalar operations of one column.
//! * Along rows, one row is a serial chain of dependent adds; we run eight rows
//!   at once so the chains overlap in the pipeline.
//! * Only 64×64 values of the last column pass survive decimation. The second
//!   row pass therefore writes only the 64 sampled columns (its running sum still
//!   walks the whole row, so the values are unchanged), and the second column
//!   pass runs on those 64 columns and writes only the 64 sampled rows.

/// Side of the decimated square that the DCT consumes.
pub const DOWNSAMPLE: usize = 64;

/// Number of (rows, columns) box-filter rounds; PDQ uses two (a tent filter).
const JAROSZ_PASSES: usize = 2;

/// Rows filtered side by side in a row pass.
const ROW_LANES: usize = 8;

/// The reference's window size for shrinking `old` samples to `new`: half a
/// destination cell, rounded up, because two passes are applied.
pub fn window_size(old: usize, new: usize) -> usize {
    old.div_ceil(2 * new)
}

/// Indices the reference samples when decimating `len` positions to 64: the
/// centres of 64 equal cells, computed in `f64` exactly as the reference does.
pub fn decimation_indices(len: usize) -> [usize; DOWNSAMPLE] {
    let mut idx = [0usize; DOWNSAMPLE];
    for (out, slot) in idx.iter_mut().enumerate() {
        *slot = (((out as f64 + 0.5) * len as f64) / DOWNSAMPLE as f64) as usize;
    }
    idx
}

/// Phase lengths of the reference's one-dimensional box filter.
///
/// For a window of `w` over `n` samples: accumulate `half - 1` samples without
/// output, then `w - half + 1` outputs with a growing window, `n - w` outputs
/// with a full window, and `half - 1` outputs with a shrinking one.
#[derive(Clone, Copy, Debug)]
struct Phases {
    warm: usize,
    grow: usize,
    full: usize,
    shrink: usize,
}

impl Phases {
    fn new(n: usize, w: usize) -> Self {
        debug_assert!(w >= 1 && w <= n, "window {w} over {n} samples");
        let half = (w + 2) / 2;
        Phases {
            warm: half - 1,
            grow: w - half + 1,
            full: n - w,
            shrink: half - 1,
        }
    }
}

/// Scratch space for [`blur_and_decimate`], reusable across images so bulk
/// hashing does not reallocate per image.
#[derive(Default)]
pub struct BlurScratch {
    plane: Vec<f32>,
    sampled: Vec<f32>,
}

/// Blurs `luma` (row-major, `rows × cols`, overwritten as scratch) with the
/// reference's two Jarosz rounds and returns the 64×64 decimation.
///
/// On x86-64 CPUs with AVX2 the same code runs compiled for AVX2: twice the
/// lanes per instruction, the same IEEE operations in the same order (Rust
/// never fuses a multiply and an add on its own), so the same bits.
// SAFETY: the one unsafe block calls the AVX2 build only after checking at
// run time that the CPU has AVX2 (see the comment on the block).
#[allow(unsafe_code)]
pub fn blur_and_decimate(
    luma: &mut [f32],
    rows: usize,
    cols: usize,
    scratch: &mut BlurScratch,
) -> [[f32; DOWNSAMPLE]; DOWNSAMPLE] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `blur_and_decimate_avx2` only requires that the CPU
            // supports AVX2, which was checked at run time just above.
            return unsafe { blur_and_decimate_avx2(luma, rows, cols, scratch) };
        }
    }
    blur_and_decimate_portable(luma, rows, cols, scratch)
}

/// [`blur_and_decimate_portable`] compiled with AVX2 enabled.
///
/// # Safety
/// The CPU must support AVX2.
// SAFETY: `unsafe` only because `#[target_feature]` functions must be on
// Rust 1.85; the body calls safe code only, and the one caller checks for
// AVX2 first.
#[allow(unsafe_code)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn blur_and_decimate_avx2(
    luma: &mut [f32],
    rows: usize,
    cols: usize,
    scratch: &mut BlurScratch,
) -> [[f32; DOWNSAMPLE]; DOWNSAMPLE] {
    blur_and_decimate_portable(luma, rows, cols, scratch)
}

/// The blur for any CPU; inlined into the feature-specific entry points so
/// that each is compiled for its instruction set.
#[inline(always)]
fn blur_and_decimate_portable(
    luma: &mut [f32],
    rows: usize,
    cols: usize,
    scratch: &mut BlurScratch,
) -> [[f32; DOWNSAMPLE]; DOWNSAMPLE] {
    assert_eq!(luma.len(), rows * cols, "luma plane size");
    let w_rows = window_size(cols, DOWNSAMPLE); // window along each row
    let w_cols = window_size(rows, DOWNSAMPLE); // window along each column
    let row_idx = decimation_indices(rows);
    let col_idx = decimation_indices(cols);

    scratch.plane.resize(rows * cols, 0.0);
    scratch.sampled.resize(rows * DOWNSAMPLE, 0.0);
    let plane = &mut scratch.plane[..];
    let sampled = &mut scratch.sampled[..];

    // Every round but the last runs in full: luma -> plane -> luma.
    for _ in 0..JAROSZ_PASSES - 1 {
        box_rows(luma, plane, rows, cols, w_rows, None);
        box_cols(plane, luma, rows, cols, w_cols, None);
    }
    // Last round: rows pass writes the 64 sampled columns only (rows × 64),
    // then the columns pass on those writes the 64 sampled rows only.
    box_rows(luma, sampled, rows, cols, w_rows, Some(&col_idx));
    let mut out = [[0f32; DOWNSAMPLE]; DOWNSAMPLE];
    let mut out_rows = [0f32; DOWNSAMPLE * DOWNSAMPLE];
    box_cols(
        sampled,
        &mut out_rows,
        rows,
        DOWNSAMPLE,
        w_cols,
        Some(&row_idx),
    );
    for (dst, src) in out.iter_mut().zip(out_rows.chunks_exact(DOWNSAMPLE)) {
        dst.copy_from_slice(src);
    }
    out
}

/// Box filter along every row of `input` (`rows × cols`).
///
/// With `keep = None` the output is `rows × cols`; with `keep = Some(cols_kept)`
/// (ascending column indices) it is `rows × cols_kept.len()`, holding only those
/// columns.
#[inline(always)]
fn box_rows(
    input: &[f32],
    output: &mut [f32],
    rows: usize,
    cols: usize,
    w: usize,
    keep: Option<&[usize]>,
) {
    #[inline(always)]
    fn strip<const L: usize>(
        input: &[f32],
        output: &mut [f32],
        first: usize,
        cols: usize,
        w: usize,
        keep: Option<&[usize]>,
    ) {
        match keep {
            None => box_row_lanes::<L, _>(
                input,
                first,
                cols,
                w,
                EveryColumn {
                    output,
                    first,
                    cols,
                },
            ),
            Some(keep) => box_row_lanes::<L, _>(
                input,
                first,
                cols,
                w,
                KeptColumns {
                    output,
                    first,
                    keep,
                    next: 0,
                },
            ),
        }
    }
    let mut r = 0;
    while r + ROW_LANES <= rows {
        strip::<ROW_LANES>(input, output, r, cols, w, keep);
        r += ROW_LANES;
    }
    while r < rows {
        strip::<1>(input, output, r, cols, w, keep);
        r += 1;
    }
}

/// Where the row filter puts the value of output position `oi` for each lane.
trait RowSink<const L: usize> {
    fn emit(&mut self, oi: usize, sum: &[f32; L], count: usize);
}

/// Writes every column: the full `rows × cols` output.
struct EveryColumn<'a> {
    output: &'a mut [f32],
    first: usize,
    cols: usize,
}

impl<const L: usize> RowSink<L> for EveryColumn<'_> {
    #[inline(always)]
    fn emit(&mut self, oi: usize, sum: &[f32; L], count: usize) {
        let divisor = count as f32;
        for (l, s) in sum.iter().enumerate() {
            self.output[(self.first + l) * self.cols + oi] = s / divisor;
        }
    }
}

/// Writes only the kept columns, compactly (`rows × keep.len()`). Kept
/// columns ascend; a side shorter than 64 repeats an index, and every copy
/// gets the value.
struct KeptColumns<'a> {
    output: &'a mut [f32],
    first: usize,
    keep: &'a [usize],
    next: usize,
}

impl<const L: usize> RowSink<L> for KeptColumns<'_> {
    #[inline(always)]
    fn emit(&mut self, oi: usize, sum: &[f32; L], count: usize) {
        let width = self.keep.len();
        while self.next < width && self.keep[self.next] == oi {
            for (l, s) in sum.iter().enumerate() {
                self.output[(self.first + l) * width + self.next] = s / count as f32;
            }
            self.next += 1;
        }
    }
}

/// Filters rows `first..first + L` together, one running sum per lane.
#[inline(always)]
fn box_row_lanes<const L: usize, S: RowSink<L>>(
    input: &[f32],
    first: usize,
    cols: usize,
    w: usize,
    mut sink: S,
) {
    let ph = Phases::new(cols, w);
    let rows_in: [&[f32]; L] =
        std::array::from_fn(|l| &input[(first + l) * cols..(first + l + 1) * cols]);
    let mut sum = [0f32; L];
    let mut count = 0usize;
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);

    for _ in 0..ph.warm {
        for l in 0..L {
            sum[l] += rows_in[l][ri];
        }
        count += 1;
        ri += 1;
    }
    for _ in 0..ph.grow {
        for l in 0..L {
            sum[l] += rows_in[l][ri];
        }
        count += 1;
        sink.emit(oi, &sum, count);
        ri += 1;
        oi += 1;
    }
    for _ in 0..ph.full {
        for l in 0..L {
            sum[l] += rows_in[l][ri];
            sum[l] -= rows_in[l][li];
        }
        sink.emit(oi, &sum, count);
        li += 1;
        ri += 1;
        oi += 1;
    }
    for _ in 0..ph.shrink {
        for l in 0..L {
            sum[l] -= rows_in[l][li];
        }
        count -= 1;
        sink.emit(oi, &sum, count);
        li += 1;
        oi += 1;
    }
}

/// Box filter down every column of `input` (`rows × cols`), walking row by row
/// with one running sum per column.
///
/// With `keep = None` the output is `rows × cols`; with `keep = Some(rows_kept)`
/// (ascending row indices) it is `rows_kept.len() × cols`.
#[inline(always)]
fn box_cols(
    input: &[f32],
    output: &mut [f32],
    rows: usize,
    cols: usize,
    w: usize,
    keep: Option<&[usize]>,
) {
    let ph = Phases::new(rows, w);
    let row = |i: usize| &input[i * cols..(i + 1) * cols];
    let mut sum = vec![0f32; cols];
    let mut count = 0usize;
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);
    let mut next_keep = 0usize;

    let mut emit = |oi: usize, sum: &[f32], count: usize, output: &mut [f32]| {
        let divisor = count as f32;
        match keep {
            None => divide_into(&mut output[oi * cols..(oi + 1) * cols], sum, divisor),
            Some(k) => {
                while next_keep < k.len() && k[next_keep] == oi {
                    let dst = &mut output[next_keep * cols..(next_keep + 1) * cols];
                    divide_into(dst, sum, divisor);
                    next_keep += 1;
                }
            }
        }
    };

    for _ in 0..ph.warm {
        add_row(&mut sum, row(ri));
        count += 1;
        ri += 1;
    }
    for _ in 0..ph.grow {
        add_row(&mut sum, row(ri));
        count += 1;
        emit(oi, &sum, count, output);
        ri += 1;
        oi += 1;
    }
    for _ in 0..ph.full {
        add_sub_row(&mut sum, row(ri), row(li));
        emit(oi, &sum, count, output);
        li += 1;
        ri += 1;
        oi += 1;
    }
    for _ in 0..ph.shrink {
        sub_row(&mut sum, row(li));
        count -= 1;
        emit(oi, &sum, count, output);
        li += 1;
        oi += 1;
    }
}

#[inline(always)]
fn add_row(sum: &mut [f32], add: &[f32]) {
    for (s, a) in sum.iter_mut().zip(add) {
        *s += a;
    }
}

#[inline(always)]
fn sub_row(sum: &mut [f32], sub: &[f32]) {
    for (s, b) in sum.iter_mut().zip(sub) {
        *s -= b;
    }
}

/// `sum += add; sum -= sub`, as two separately rounded operations.
#[inline(always)]
fn add_sub_row(sum: &mut [f32], add: &[f32], sub: &[f32]) {
    for ((s, a), b) in sum.iter_mut().zip(add).zip(sub) {
        *s += a;
        *s -= b;
    }
}

#[inline(always)]
fn divide_into(dst: &mut [f32], sum: &[f32], divisor: f32) {
    for (d, s) in dst.iter_mut().zip(sum) {
        *d = s / divisor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's box filter, literally: one strided vector at a time.
    fn box_1d_reference(input: &[f32], out: &mut [f32], n: usize, stride: usize, w: usize) {
        let ph = Phases::new(n, w);
        let (mut li, mut ri, mut oi) = (0, 0, 0);
        let mut sum = 0f32;
        let mut count = 0usize;
        for _ in 0..ph.warm {
            sum += input[ri];
            count += 1;
            ri += stride;
        }
        for _ in 0..ph.grow {
            sum += input[ri];
            count += 1;
            out[oi] = sum / count as f32;
            ri += stride;
            oi += stride;
        }
        for _ in 0..ph.full {
            sum += input[ri];
            sum -= input[li];
            out[oi] = sum / count as f32;
            li += stride;
            ri += stride;
            oi += stride;
        }
        for _ in 0..ph.shrink {
            sum -= input[li];
            count -= 1;
            out[oi] = sum / count as f32;
            li += stride;
            oi += stride;
        }
    }

    fn reference_blur_decimate(luma: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut a = luma.to_vec();
        let mut b = vec![0f32; rows * cols];
        let (wr, wc) = (window_size(cols, 64), window_size(rows, 64));
        for _ in 0..2 {
            for i in 0..rows {
                box_1d_reference(&a[i * cols..], &mut b[i * cols..], cols, 1, wr);
            }
            for j in 0..cols {
                box_1d_reference(&b[j..], &mut a[j..], rows, cols, wc);
            }
        }
        let (ri, ci) = (decimation_indices(rows), decimation_indices(cols));
        let mut out = Vec::with_capacity(64 * 64);
        for &r in &ri {
            for &c in &ci {
                out.push(a[r * cols + c]);
            }
        }
        out
    }

    fn pseudo_random_plane(rows: usize, cols: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..rows * cols)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 25_600) as f32 / 100.0
            })
            .collect()
    }

    #[test]
    fn fast_path_is_bit_identical_to_the_literal_reference() {
        // Odd sizes, power-of-two sizes, sides below 64 (repeated decimation
        // indices) and a side below the row lane count.
        for &(rows, cols) in &[
            (5, 5),
            (7, 300),
            (64, 64),
            (100, 37),
            (128, 256),
            (333, 129),
            (512, 512),
            (1004, 1600),
        ] {
            let luma = pseudo_random_plane(rows, cols, (rows * 7 + cols) as u32);
            let expected = reference_blur_decimate(&luma, rows, cols);
            let mut work = luma.clone();
            let got = blur_and_decimate(&mut work, rows, cols, &mut BlurScratch::default());
            let got: Vec<f32> = got.iter().flatten().copied().collect();
            let same = expected
                .iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{rows}x{cols} differs from the reference");
            // The portable build too, which the dispatcher skips on AVX2 CPUs.
            let mut work = luma.clone();
            let portable =
                blur_and_decimate_portable(&mut work, rows, cols, &mut BlurScratch::default());
            let same = expected
                .iter()
                .zip(portable.iter().flatten())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{rows}x{cols}: portable path differs from the reference"
            );
        }
    }

    #[test]
    fn window_sizes_match_the_reference_formula() {
        assert_eq!(window_size(512, 64), 4);
        assert_eq!(window_size(1600, 64), 13);
        assert_eq!(window_size(64, 64), 1);
        assert_eq!(window_size(5, 64), 1);
    }
}
