//! Times our PDQ hash step (RGB bytes → luma → hash and quality, full
//! resolution, one thread) on the shared benchmark buffers and prints one
//! JSON line per buffer. With `--write DIR`, first writes the buffers as
//! `DIR/rgb-WxH.raw` for the reference timers.
//!
//! `cargo run --release --example pdq_time -- [--write DIR] [--iters N]`

#[path = "../benches/common/pixels.rs"]
mod pixels;

use std::time::Instant;

use hashfed::signal::pdq::{PdqHasher, PixelLayout, Resolution};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let iters: usize = value("--iters").map_or(Ok(200), |v| v.parse())?;
    for (w, h) in pixels::SIZES {
        let rgb = pixels::bench_rgb(w, h);
        if let Some(dir) = value("--write") {
            std::fs::create_dir_all(dir)?;
            std::fs::write(format!("{dir}/rgb-{w}x{h}.raw"), &rgb)?;
        }
        let mut hasher = PdqHasher::new();
        let mut out = hasher.hash_pixels(&rgb, w, h, PixelLayout::Rgb, Resolution::Full);
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            out = std::hint::black_box(hasher.hash_pixels(
                &rgb,
                w,
                h,
                PixelLayout::Rgb,
                Resolution::Full,
            ));
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{{\"impl\":\"hashfed\",\"buffer\":\"{w}x{h}\",\"median_ms\":{:.4},\"min_ms\":{:.4},\"iters\":{iters},\"hash\":\"{}\",\"quality\":{}}}",
            times[iters / 2], times[0], out.hash, out.quality
        );
    }
    Ok(())
}
