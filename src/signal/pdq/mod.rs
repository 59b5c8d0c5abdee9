//! PDQ, Meta's 256-bit perceptual image hash, bit-exact with the C++ reference.
//!
//! The pipeline, one file per stage:
//!
//! ```text
//! pixels ─luma──▶ f32 plane ─blur──▶ 64×64 ─dct──▶ 16×16 ─median──▶ 256 bits
//!  (RGB/grey,      (optional 512×512    (2× Jarosz     (D·A·Dᵀ)   (bit = coefficient
//!   luma.rs)        nearest pre-resize)  box, blur.rs)  dct.rs      > median)
//! ```
//!
//! The quality score (0..=100) is computed on the 64×64 image; Meta suggests
//! discarding hashes below 50. The eight dihedral variants (rotations and
//! flips) are derived from the one DCT by sign changes and transposition, so
//! they cost almost nothing beyond the first hash.
//!
//! This module holds all of the PDQ arithmetic; nothing else in the crate
//! computes any part of it.

mod blur;
mod dct;
mod hash;
mod luma;

pub use blur::{blur_and_decimate, decimation_indices, window_size, BlurScratch, DOWNSAMPLE};
pub use dct::{dct64_to_16, dct_matrix, quality, torben_median, Dct16, Dihedral, DCT_SIDE};
pub use hash::{ParsePdqError, PdqHash, PDQ_BITS, PDQ_HEX_LEN};
pub use luma::{luma_of, luma_plane, luma_plane_into, PixelLayout, Resolution, CLI_RESIZE};

/// Images with a side shorter than this hash to all zeros with quality 0, as
/// in the reference.
pub const MIN_HASHABLE_SIDE: usize = 5;

/// Meta's recommended quality floor: hashes below it are unreliable.
pub const DEFAULT_QUALITY_FLOOR: u8 = 50;

/// Meta's recommended match threshold (Hamming distance, inclusive).
pub const DEFAULT_MATCH_THRESHOLD: u32 = 31;

/// A PDQ hash and its quality score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PdqOutput {
    /// The hash.
    pub hash: PdqHash,
    /// Quality, 0..=100.
    pub quality: u8,
}

/// The eight dihedral hashes of one image, in [`Dihedral::ALL`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PdqDihedral {
    /// Hashes indexed like [`Dihedral::ALL`].
    pub hashes: [PdqHash; 8],
    /// Quality, 0..=100 (the same for every variant).
    pub quality: u8,
}

impl PdqDihedral {
    /// The hash of one variant.
    pub fn get(&self, which: Dihedral) -> PdqHash {
        let pos = Dihedral::ALL.iter().position(|&d| d == which).unwrap_or(0);
        self.hashes[pos]
    }
}

/// A reusable PDQ hasher: owns the luma plane and the blur scratch, so that
/// hashing many images on one thread allocates once.
#[derive(Default)]
pub struct PdqHasher {
    plane: Vec<f32>,
    scratch: BlurScratch,
}

impl PdqHasher {
    /// A hasher with empty scratch space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes 8-bit pixels under the given resolution convention.
    pub fn hash_pixels(
        &mut self,
        pixels: &[u8],
        width: usize,
        height: usize,
        layout: PixelLayout,
        resolution: Resolution,
    ) -> PdqOutput {
        self.with_luma(pixels, width, height, layout, resolution, Self::hash_luma)
    }

    /// The eight dihedral hashes of 8-bit pixels.
    pub fn hash_pixels_dihedral(
        &mut self,
        pixels: &[u8],
        width: usize,
        height: usize,
        layout: PixelLayout,
        resolution: Resolution,
    ) -> PdqDihedral {
        self.with_luma(
            pixels,
            width,
            height,
            layout,
            resolution,
            Self::hash_luma_dihedral,
        )
    }

    /// The plain hash and the eight dihedral hashes of 8-bit pixels, from one
    /// blur where the reference's two entry points agree (everywhere except a
    /// 64×64 plane, where the plain hash skips the blur).
    pub fn hash_pixels_with_dihedral(
        &mut self,
        pixels: &[u8],
        width: usize,
        height: usize,
        layout: PixelLayout,
        resolution: Resolution,
    ) -> (PdqOutput, PdqDihedral) {
        self.with_luma(
            pixels,
            width,
            height,
            layout,
            resolution,
            |hasher, plane, rows, cols| {
                if rows == DOWNSAMPLE && cols == DOWNSAMPLE {
                    let plain = hasher.hash_luma(&mut plane.to_vec(), rows, cols);
                    return (plain, hasher.hash_luma_dihedral(plane, rows, cols));
                }
                let dihedral = hasher.hash_luma_dihedral(plane, rows, cols);
                let plain = PdqOutput {
                    hash: dihedral.hashes[0],
                    quality: dihedral.quality,
                };
                (plain, dihedral)
            },
        )
    }

    /// Fills the hasher's own luma plane from `pixels` and runs `f` on it
    /// (with the plane's `rows` and `cols`), keeping the buffer for next time.
    fn with_luma<R>(
        &mut self,
        pixels: &[u8],
        width: usize,
        height: usize,
        layout: PixelLayout,
        resolution: Resolution,
        f: impl FnOnce(&mut Self, &mut [f32], usize, usize) -> R,
    ) -> R {
        let mut plane = std::mem::take(&mut self.plane);
        let (rows, cols) = luma_plane_into(&mut plane, pixels, width, height, layout, resolution);
        let out = f(self, &mut plane, rows, cols);
        self.plane = plane;
        out
    }

    /// Hashes a luma plane (`rows × cols`, row-major; used as scratch).
    ///
    /// As in the reference, a plane of exactly 64×64 skips the blur and is
    /// used directly (video pipelines often hand over frames already scaled).
    pub fn hash_luma(&mut self, luma: &mut [f32], rows: usize, cols: usize) -> PdqOutput {
        if rows < MIN_HASHABLE_SIDE || cols < MIN_HASHABLE_SIDE {
            return PdqOutput {
                hash: PdqHash::ZERO,
                quality: 0,
            };
        }
        let small = if rows == DOWNSAMPLE && cols == DOWNSAMPLE {
            let mut a = [[0f32; DOWNSAMPLE]; DOWNSAMPLE];
            for (dst, src) in a.iter_mut().zip(luma.chunks_exact(DOWNSAMPLE)) {
                dst.copy_from_slice(src);
            }
            a
        } else {
            blur_and_decimate(luma, rows, cols, &mut self.scratch)
        };
        let dct = dct64_to_16(&small);
        PdqOutput {
            hash: bits_above_median(&dct),
            quality: quality(&small),
        }
    }

    /// The eight dihedral hashes of a luma plane (used as scratch).
    ///
    /// Unlike [`PdqHasher::hash_luma`], and like the reference's dihedral
    /// entry point, a 64×64 plane is blurred too, so the `Original` variant of
    /// a 64×64 input can differ slightly from its plain hash.
    pub fn hash_luma_dihedral(
        &mut self,
        luma: &mut [f32],
        rows: usize,
        cols: usize,
    ) -> PdqDihedral {
        if rows < MIN_HASHABLE_SIDE || cols < MIN_HASHABLE_SIDE {
            return PdqDihedral {
                hashes: [PdqHash::ZERO; 8],
                quality: 0,
            };
        }
        let small = blur_and_decimate(luma, rows, cols, &mut self.scratch);
        let dct = dct64_to_16(&small);
        PdqDihedral {
            hashes: Dihedral::ALL.map(|d| bits_above_median(&d.apply(&dct))),
            quality: quality(&small),
        }
    }
}

/// Bit `16 i + j` is set when coefficient `(i, j)` exceeds the median.
fn bits_above_median(dct: &Dct16) -> PdqHash {
    let flat: &[f32] = dct.as_flattened();
    let median = torben_median(flat);
    let mut hash = PdqHash::ZERO;
    for (k, &v) in flat.iter().enumerate() {
        if v > median {
            hash.set_bit(k);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_images_hash_to_zero_with_zero_quality() {
        let out =
            PdqHasher::new().hash_pixels(&[9; 4 * 40], 4, 40, PixelLayout::Grey, Resolution::Full);
        assert_eq!(
            out,
            PdqOutput {
                hash: PdqHash::ZERO,
                quality: 0
            }
        );
    }

    #[test]
    fn flat_image_has_zero_quality_and_no_panic() {
        let out = PdqHasher::new().hash_pixels(
            &[200; 3 * 100 * 80],
            100,
            80,
            PixelLayout::Rgb,
            Resolution::Full,
        );
        assert_eq!(out.quality, 0);
    }

    #[test]
    fn dihedral_original_equals_plain_hash_off_the_64_square() {
        let pixels: Vec<u8> = (0..120 * 90).map(|i| ((i * 37) % 251) as u8).collect();
        let mut h = PdqHasher::new();
        let plain = h.hash_pixels(&pixels, 120, 90, PixelLayout::Grey, Resolution::Full);
        let dih = h.hash_pixels_dihedral(&pixels, 120, 90, PixelLayout::Grey, Resolution::Full);
        assert_eq!(plain.hash, dih.get(Dihedral::Original));
        assert_eq!(plain.quality, dih.quality);
    }
}
