//! Deterministic RGB test buffers shared by the PDQ benchmarks
//! (`benches/pdq.rs`, `examples/pdq_time.rs`), so that ours and Meta's
//! reference hash exactly the same pixels.
//!
//! For pixel `(x, y)` of a `W × H` buffer, with `fx = x / W`, `fy = y / H`
//! (so both sizes show the same picture), channel `c` is
//!
//! ```text
//! base    = [200·fx, 180·fy, 120 + 100·(fx − fy)]          smooth gradients
//! texture = 48 · sin(2π·7·fx) · sin(2π·5·fy)                on every channel
//! disc i  : inside disc i (centre, radius below), channel i → 255 − channel i
//! bar     : inside [0.08, 0.42) × [0.70, 0.88), every channel → 30 (before noise)
//! noise   = xorshift32 (13, 17, 5; seed 0x2545f491 ^ (31·W + H)) mod 33 − 16
//! value   = clamp(trunc(base + texture, after disc/bar) + noise, 0, 255)
//! ```
//!
//! The texture and the shapes give the blurred 64×64 image real gradients, so
//! the hash is far from trivial and its quality is above Meta's floor of 50;
//! the noise keeps the luma and blur stages from seeing flat runs.

use std::f64::consts::TAU;

/// Packed RGB, `width × height × 3` bytes, rows top to bottom.
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
        let fy = y as f64 / height as f64;
        let ty = 48.0 * (TAU * 5.0 * fy).sin();
        for x in 0..width {
            let fx = x as f64 / width as f64;
            let texture = ty * (TAU * 7.0 * fx).sin();
            let mut base = [
                200.0 * fx + texture,
                180.0 * fy + texture,
                120.0 + 100.0 * (fx - fy) + texture,
            ];
            for (i, &(cx, cy, r)) in discs.iter().enumerate() {
                if (fx - cx) * (fx - cx) + (fy - cy) * (fy - cy) < r * r {
                    base[i] = 255.0 - base[i];
                }
            }
            if (0.08..0.42).contains(&fx) && (0.70..0.88).contains(&fy) {
                base = [30.0; 3];
            }
            for v in base {
                out.push((v as i32 + noise()).clamp(0, 255) as u8);
            }
        }
    }
    out
}

/// The benchmark sizes: a 512×512 square and a 1600×1004 photo-like frame.
pub const SIZES: [(usize, usize); 2] = [(512, 512), (1600, 1004)];
