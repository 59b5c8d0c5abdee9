//! The partial 2-D DCT (64×64 → 16×16), the median threshold, the quality
//! metric and the dihedral transforms in the DCT domain.
//!
//! The reference computes `B = D · A · Dᵀ` with `D` the 16×64 DCT-II matrix
//! restricted to frequencies 1..=16, summing each dot product in index order
//! in `f32`. We keep that order per output and vectorise across outputs: each
//! SIMD lane holds one `(i, j)` sum and performs the scalar steps of that sum.

use std::sync::LazyLock;

use super::blur::DOWNSAMPLE;

/// Side of the DCT output kept for the hash.
pub const DCT_SIDE: usize = 16;

/// A 16×16 block of DCT coefficients, row = vertical frequency.
pub type Dct16 = [[f32; DCT_SIDE]; DCT_SIDE];

/// `D[i][j] = sqrt(2/64) · cos(π/128 · (i+1) · (2j+1))`, rounded the way the
/// reference rounds it: the scale factor is first rounded to `f32`, the product
/// is taken in `f64` and rounded to `f32` on store.
static DCT_MATRIX: LazyLock<[[f32; DOWNSAMPLE]; DCT_SIDE]> = LazyLock::new(|| {
    let cols = DOWNSAMPLE as f64;
    let scale = (2.0 / cols).sqrt() as f32;
    let mut d = [[0f32; DOWNSAMPLE]; DCT_SIDE];
    for (i, row) in d.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let angle = (std::f64::consts::PI / 2.0 / cols) * (i + 1) as f64 * (2 * j + 1) as f64;
            *v = (scale as f64 * angle.cos()) as f32;
        }
    }
    d
});

/// Transpose of [`DCT_MATRIX`], so the second product runs along rows.
static DCT_MATRIX_T: LazyLock<[[f32; DCT_SIDE]; DOWNSAMPLE]> = LazyLock::new(|| {
    let d = &*DCT_MATRIX;
    let mut t = [[0f32; DCT_SIDE]; DOWNSAMPLE];
    for (i, row) in d.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j][i] = v;
        }
    }
    t
});

/// The 16×64 DCT matrix the hash uses (exposed for verification).
pub fn dct_matrix() -> &'static [[f32; DOWNSAMPLE]; DCT_SIDE] {
    &DCT_MATRIX
}

/// `D · A · Dᵀ` for the 64×64 decimated image `a`.
pub fn dct64_to_16(a: &[[f32; DOWNSAMPLE]; DOWNSAMPLE]) -> Dct16 {
    let d = &*DCT_MATRIX;
    // T = D · A: T[i][j] = Σ_k D[i][k] · A[k][j], k ascending.
    let mut t = [[0f32; DOWNSAMPLE]; DCT_SIDE];
    for (t_row, d_row) in t.iter_mut().zip(d.iter()) {
        for (&dk, a_row) in d_row.iter().zip(a.iter()) {
            for (tv, &av) in t_row.iter_mut().zip(a_row.iter()) {
                *tv += dk * av;
            }
        }
    }
    // B = T · Dᵀ: B[i][j] = Σ_k T[i][k] · D[j][k], k ascending.
    let dt = &*DCT_MATRIX_T;
    let mut b = [[0f32; DCT_SIDE]; DCT_SIDE];
    for (b_row, t_row) in b.iter_mut().zip(t.iter()) {
        for (&tk, dt_row) in t_row.iter().zip(dt.iter()) {
            for (bv, &dv) in b_row.iter_mut().zip(dt_row.iter()) {
                *bv += tk * dv;
            }
        }
    }
    b
}

/// Torben's median as the reference implements it (bisection on values,
/// returning an element or the midpoint the reference returns).
pub fn torben_median(m: &[f32]) -> f32 {
    let n = m.len();
    debug_assert!(n > 0);
    let (mut min, mut max) = (m[0], m[0]);
    for &v in &m[1..] {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let half = n.div_ceil(2);
    loop {
        let guess = (min + max) / 2.0;
        let (mut less, mut greater, mut equal) = (0usize, 0usize, 0usize);
        let (mut max_lt_guess, mut min_gt_guess) = (min, max);
        for &v in m {
            if v < guess {
                less += 1;
                if v > max_lt_guess {
                    max_lt_guess = v;
                }
            } else if v > guess {
                greater += 1;
                if v < min_gt_guess {
                    min_gt_guess = v;
                }
            } else {
                equal += 1;
            }
        }
        if less <= half && greater <= half {
            return if less >= half {
                max_lt_guess
            } else if less + equal >= half {
                guess
            } else {
                min_gt_guess
            };
        } else if less > greater {
            max = max_lt_guess;
        } else {
            min = min_gt_guess;
        }
    }
}

/// The reference's image-domain quality score (0..=100): the sum of quantised
/// vertical and horizontal gradients of the 64×64 image, scaled by 1/90.
pub fn quality(a: &[[f32; DOWNSAMPLE]; DOWNSAMPLE]) -> u8 {
    // (u - v) * 100 / 255 in f32, truncated toward zero as C's int conversion.
    let step = |u: f32, v: f32| ((u - v) * 100.0 / 255.0) as i32;
    let mut gradient_sum: i64 = 0;
    for pair in a.windows(2) {
        for (&u, &v) in pair[0].iter().zip(pair[1].iter()) {
            gradient_sum += i64::from(step(u, v).abs());
        }
    }
    for row in a.iter() {
        for pair in row.windows(2) {
            gradient_sum += i64::from(step(pair[0], pair[1]).abs());
        }
    }
    (gradient_sum / 90).min(100) as u8
}

/// The eight symmetries of the square, named as the reference names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dihedral {
    /// The image as given.
    Original,
    /// Rotated 90°.
    Rotate90,
    /// Rotated 180°.
    Rotate180,
    /// Rotated 270°.
    Rotate270,
    /// Mirrored top to bottom.
    FlipX,
    /// Mirrored left to right.
    FlipY,
    /// Transposed about the main diagonal.
    FlipPlus1,
    /// Transposed about the anti-diagonal.
    FlipMinus1,
}

impl Dihedral {
    /// All eight, in the reference's output order.
    pub const ALL: [Dihedral; 8] = [
        Dihedral::Original,
        Dihedral::Rotate90,
        Dihedral::Rotate180,
        Dihedral::Rotate270,
        Dihedral::FlipX,
        Dihedral::FlipY,
        Dihedral::FlipPlus1,
        Dihedral::FlipMinus1,
    ];

    /// Short name used in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Dihedral::Original => "orig",
            Dihedral::Rotate90 => "rot90",
            Dihedral::Rotate180 => "rot180",
            Dihedral::Rotate270 => "rot270",
            Dihedral::FlipX => "flipx",
            Dihedral::FlipY => "flipy",
            Dihedral::FlipPlus1 => "flipplus1",
            Dihedral::FlipMinus1 => "flipminus1",
        }
    }

    /// The DCT of the transformed image, derived from the original's DCT:
    /// a rotation or flip only transposes and negates coefficients
    /// (odd frequencies change sign under reflection).
    pub fn apply(self, a: &Dct16) -> Dct16 {
        let mut b = [[0f32; DCT_SIDE]; DCT_SIDE];
        for i in 0..DCT_SIDE {
            for j in 0..DCT_SIDE {
                let v = a[i][j];
                let (odd_i, odd_j, odd_sum) = (i & 1 == 1, j & 1 == 1, (i + j) & 1 == 1);
                match self {
                    Dihedral::Original => b[i][j] = v,
                    Dihedral::Rotate90 => b[j][i] = if odd_j { v } else { -v },
                    Dihedral::Rotate180 => b[i][j] = if odd_sum { -v } else { v },
                    Dihedral::Rotate270 => b[j][i] = if odd_i { v } else { -v },
                    Dihedral::FlipX => b[i][j] = if odd_i { v } else { -v },
                    Dihedral::FlipY => b[i][j] = if odd_j { v } else { -v },
                    Dihedral::FlipPlus1 => b[j][i] = v,
                    Dihedral::FlipMinus1 => b[j][i] = if odd_sum { -v } else { v },
                }
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torben_matches_a_sort_for_distinct_values() {
        let v: Vec<f32> = (0..256).map(|i| ((i * 7919) % 256) as f32 * 0.5).collect();
        let mut sorted = v.clone();
        sorted.sort_by(f32::total_cmp);
        // n even: the reference returns the lower middle element.
        assert_eq!(torben_median(&v), sorted[127]);
    }

    #[test]
    fn torben_of_a_constant_is_that_constant() {
        assert_eq!(torben_median(&[3.5; 256]), 3.5);
    }

    #[test]
    fn flat_image_has_zero_quality() {
        assert_eq!(quality(&[[128.0; 64]; 64]), 0);
    }

    #[test]
    fn dihedral_group_laws_hold() {
        let mut a = [[0f32; 16]; 16];
        for (i, row) in a.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (i * 16 + j) as f32 + 1.0;
            }
        }
        let r90 = Dihedral::Rotate90.apply(&a);
        let r180 = Dihedral::Rotate90.apply(&r90);
        assert_eq!(r180, Dihedral::Rotate180.apply(&a));
        let r270 = Dihedral::Rotate90.apply(&r180);
        assert_eq!(r270, Dihedral::Rotate270.apply(&a));
        assert_eq!(Dihedral::Rotate90.apply(&r270), a);
        for d in Dihedral::ALL {
            if matches!(
                d,
                Dihedral::FlipX | Dihedral::FlipY | Dihedral::FlipPlus1 | Dihedral::FlipMinus1
            ) {
                assert_eq!(d.apply(&d.apply(&a)), a, "{d:?} is an involution");
            }
        }
    }
}
