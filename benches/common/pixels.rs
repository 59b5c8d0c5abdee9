//! Deterministic RGB test buffers shared by the PDQ benchmarks, so that ours
//! and the reference hash exactly the same pixels.
//!
//! The picture: horizontal and vertical gradients, a few discs, and xorshift
//! noise of ±16, so that the hash is far from trivial (quality 100).

/// Packed RGB, `width × height × 3` bytes.
pub fn bench_rgb(width: usize, height: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32 ^ (width * 31 + height) as u32;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 33) as i32 - 16
    };
    let discs = [(0.3, 0.4, 0.15), (0.7, 0.6, 0.22), (0.55, 0.2, 0.08)];
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f64 / width as f64, y as f64 / height as f64);
            let mut base = [200.0 * fx, 180.0 * fy, 120.0 + 100.0 * (fx - fy)];
            for (i, &(cx, cy, r)) in discs.iter().enumerate() {
                if (fx - cx).powi(2) + (fy - cy).powi(2) < r * r {
                    base[i] = 255.0 - base[i];
                }
            }
            for v in base {
                out.push((v as i32 + noise()).clamp(0, 255) as u8);
            }
        }
    }
    out
}

/// The sizes the issue names: a 512×512 buffer and a 1600×1004 photo.
pub const SIZES: [(usize, usize); 2] = [(512, 512), (1600, 1004)];
