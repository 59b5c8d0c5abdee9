//! From 8-bit pixels to the `f32` luma plane the hash is computed on, with the
//! reference command line's optional 512×512 nearest-neighbour pre-resize.

/// Side the reference CLI shrinks larger images to before hashing.
pub const CLI_RESIZE: usize = 512;

/// How the pixels of one image are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelLayout {
    /// Three bytes per pixel, R G B, rows top to bottom.
    Rgb,
    /// One byte per pixel (grey value taken as luma directly).
    Grey,
}

impl PixelLayout {
    /// Bytes per pixel.
    pub fn channels(self) -> usize {
        match self {
            PixelLayout::Rgb => 3,
            PixelLayout::Grey => 1,
        }
    }
}

/// Which pixels the hash is computed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resolution {
    /// The reference CLI (`pdq-photo-hasher`) convention, and the hashes most
    /// lists carry: an image with a side over 512 is first resized to exactly
    /// 512×512 by nearest neighbour (aspect ratio not kept).
    #[default]
    Cli512,
    /// Every decoded pixel (the convention of Meta's Java and Python bindings).
    Full,
}

// The reference's coefficients are `const float` initialised from double
// literals, so they are the f32 nearest to the f64 value.
const LUMA_R: f32 = 0.299_f64 as f32;
const LUMA_G: f32 = 0.587_f64 as f32;
const LUMA_B: f32 = 0.114_f64 as f32;

/// The luma of one RGB pixel, with the reference's evaluation order.
#[inline(always)]
pub fn luma_of(r: u8, g: u8, b: u8) -> f32 {
    LUMA_R * f32::from(r) + LUMA_G * f32::from(g) + LUMA_B * f32::from(b)
}

/// `coefficient × v` for every byte value: the same rounded `f32` products
/// [`luma_of`] computes, looked up instead of converted and multiplied.
struct LumaTables {
    r: [f32; 256],
    g: [f32; 256],
    b: [f32; 256],
}

impl LumaTables {
    /// [`luma_of`] by table: the same products, summed in the same order.
    #[inline(always)]
    fn luma(&self, r: u8, g: u8, b: u8) -> f32 {
        self.r[usize::from(r)] + self.g[usize::from(g)] + self.b[usize::from(b)]
    }
}

static LUMA_TABLES: std::sync::LazyLock<LumaTables> = std::sync::LazyLock::new(|| LumaTables {
    r: std::array::from_fn(|v| LUMA_R * v as f32),
    g: std::array::from_fn(|v| LUMA_G * v as f32),
    b: std::array::from_fn(|v| LUMA_B * v as f32),
});

/// Source index sampled for destination index `dst` when nearest-neighbour
/// resizing `src_len` samples to `dst_len` (CImg's rule: `floor(dst · src / dst_len)`).
#[inline(always)]
fn nearest(dst: usize, src_len: usize, dst_len: usize) -> usize {
    dst * src_len / dst_len
}

/// Builds the luma plane for `pixels` (`width × height`, `layout`) under the
/// given resolution convention. Returns `(plane, rows, cols)`.
///
/// `pixels.len()` must be `width * height * layout.channels()`.
pub fn luma_plane(
    pixels: &[u8],
    width: usize,
    height: usize,
    layout: PixelLayout,
    resolution: Resolution,
) -> (Vec<f32>, usize, usize) {
    let mut plane = Vec::new();
    let (rows, cols) = luma_plane_into(&mut plane, pixels, width, height, layout, resolution);
    (plane, rows, cols)
}

/// [`luma_plane`] into a buffer the caller keeps, so that hashing many images
/// does not map and fault in a fresh plane each time. Returns `(rows, cols)`.
pub fn luma_plane_into(
    plane: &mut Vec<f32>,
    pixels: &[u8],
    width: usize,
    height: usize,
    layout: PixelLayout,
    resolution: Resolution,
) -> (usize, usize) {
    let ch = layout.channels();
    assert_eq!(pixels.len(), width * height * ch, "pixel buffer size");
    let resize = resolution == Resolution::Cli512 && (width > CLI_RESIZE || height > CLI_RESIZE);
    let (cols, rows) = if resize {
        (CLI_RESIZE, CLI_RESIZE)
    } else {
        (width, height)
    };
    plane.clear();
    plane.resize(rows * cols, 0.0);
    if resize {
        let t = &*LUMA_TABLES;
        let src_x: Vec<usize> = (0..cols).map(|x| nearest(x, width, cols) * ch).collect();
        for (y, out) in plane.chunks_exact_mut(cols).enumerate() {
            let row = &pixels[nearest(y, height, rows) * width * ch..][..width * ch];
            match layout {
                PixelLayout::Rgb => {
                    for (d, &x) in out.iter_mut().zip(&src_x) {
                        *d = t.luma(row[x], row[x + 1], row[x + 2]);
                    }
                }
                PixelLayout::Grey => {
                    for (d, &x) in out.iter_mut().zip(&src_x) {
                        *d = f32::from(row[x]);
                    }
                }
            }
        }
    } else {
        match layout {
            PixelLayout::Rgb => rgb_to_luma(pixels, plane),
            PixelLayout::Grey => {
                for (d, &v) in plane.iter_mut().zip(pixels) {
                    *d = f32::from(v);
                }
            }
        }
    }
    (rows, cols)
}

/// Luma of packed RGB pixels into `out`, one value per pixel.
///
/// With AVX2 the formula itself vectorises (eight pixels per step, the same
/// rounded products and sums as [`luma_of`]); without it, table lookups beat
/// scalar conversions.
// SAFETY: the one unsafe block calls the AVX2 build only after checking at
// run time that the CPU has AVX2 (see the comment on the block).
#[allow(unsafe_code)]
fn rgb_to_luma(pixels: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `rgb_to_luma_avx2` only requires that the CPU supports
            // AVX2, which was checked at run time just above.
            return unsafe { rgb_to_luma_avx2(pixels, out) };
        }
    }
    let t = &*LUMA_TABLES;
    for (d, p) in out.iter_mut().zip(pixels.chunks_exact(3)) {
        *d = t.luma(p[0], p[1], p[2]);
    }
}

/// [`luma_of`] over a buffer, compiled with AVX2 enabled.
///
/// # Safety
/// The CPU must support AVX2.
// SAFETY: `unsafe` only because `#[target_feature]` functions must be on
// Rust 1.85; the body is safe code (slice iteration), and the one caller
// checks for AVX2 first.
#[allow(unsafe_code)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rgb_to_luma_avx2(pixels: &[u8], out: &mut [f32]) {
    for (d, p) in out.iter_mut().zip(pixels.chunks_exact(3)) {
        *d = luma_of(p[0], p[1], p[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_luma_equals_the_formula_for_every_byte() {
        let t = &*LUMA_TABLES;
        for r in 0..=255u8 {
            for g in [0u8, 1, 77, 128, 254, 255, r] {
                let b = r.wrapping_mul(7);
                assert_eq!(t.luma(r, g, b).to_bits(), luma_of(r, g, b).to_bits());
            }
        }
    }

    #[test]
    fn buffer_luma_equals_the_formula_for_every_byte() {
        let mut pixels = Vec::new();
        for r in 0..=255u8 {
            for g in [0u8, 1, 77, 128, 254, 255, r] {
                pixels.extend_from_slice(&[r, g, r.wrapping_mul(7)]);
            }
        }
        let mut out = vec![0f32; pixels.len() / 3];
        rgb_to_luma(&pixels, &mut out);
        for (p, got) in pixels.chunks_exact(3).zip(&out) {
            assert_eq!(got.to_bits(), luma_of(p[0], p[1], p[2]).to_bits());
        }
    }

    #[test]
    fn grey_is_taken_as_luma() {
        let (plane, rows, cols) =
            luma_plane(&[0, 128, 255, 7], 2, 2, PixelLayout::Grey, Resolution::Full);
        assert_eq!((rows, cols), (2, 2));
        assert_eq!(plane, vec![0.0, 128.0, 255.0, 7.0]);
    }

    #[test]
    fn large_images_are_resized_to_512_square_by_nearest_neighbour() {
        // 1024 wide, 2 tall: every other column survives, the height is stretched.
        let width = 1024;
        let pixels: Vec<u8> = (0..2 * width).map(|i| (i % width / 4) as u8).collect();
        let (plane, rows, cols) =
            luma_plane(&pixels, width, 2, PixelLayout::Grey, Resolution::Cli512);
        assert_eq!((rows, cols), (512, 512));
        assert_eq!(plane[1], f32::from(pixels[2]));
        assert_eq!(plane[511 * 512 + 511], f32::from(pixels[width + 1022]));
        let (_, rows, cols) = luma_plane(&pixels, width, 2, PixelLayout::Grey, Resolution::Full);
        assert_eq!((rows, cols), (2, 1024));
    }
}
