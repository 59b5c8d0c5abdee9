//! Times our PDQ hash step (RGB bytes → luma → hash and quality, full
//! resolution, one thread) on the shared benchmark buffers and prints JSON
//! lines per buffer: `hashfed` (`hash_pixels`) and `hashfed-dihedral`
//! (`hash_pixels_dihedral`), each with mean/median/min milliseconds and the
//! hash(es) produced. With `--write DIR`, first writes the buffers as
//! `DIR/rgb-WxH.raw` (packed RGB, no header) for the reference timers.
//!
//! Each line also carries `hash_numpy_luma` (`hashes_numpy_luma`): our
//! core's hash(es) of the luma plane exactly as PyPI `pdqhash.compute` builds
//! it (numpy, float64, rounded to f32 once), which must equal pdqhash's bit
//! for bit, while `hash` (`hashes`) must equal the C++ reference pipeline's
//! (float32 luma, `pdq_core_timer`).
//!
//! `cargo run --release --example pdq_time -- [--write DIR] [--iters N]`
//! (used by `benches/reference/compare.sh`).

#[path = "../benches/common/pixels.rs"]
mod pixels;

use std::time::Instant;

use hashfed::signal::pdq::{PdqHash, PdqHasher, PixelLayout, Resolution};
use serde_json::json;

struct Args {
    write: Option<String>,
    iters: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        write: None,
        iters: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--write" => args.write = Some(value()?),
            "--iters" => {
                let v = value()?;
                args.iters = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--iters wants a positive integer, got {v:?}"))?;
            }
            _ => {
                return Err(format!(
                    "unknown argument {flag:?}; usage: pdq_time [--write DIR] [--iters N]"
                ))
            }
        }
    }
    Ok(args)
}

/// Mean, median and minimum of `times` (milliseconds), and their count.
fn stats(times: &mut [f64]) -> serde_json::Value {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    let ms = |v: f64| (v * 1e4).round() / 1e4;
    json!({
        "mean_ms": ms(times.iter().sum::<f64>() / n as f64),
        "median_ms": ms(median),
        "min_ms": ms(times[0]),
        "iters": n,
    })
}

/// `base` with the fields of `stats` added.
fn with_stats(mut base: serde_json::Value, stats: serde_json::Value) -> serde_json::Value {
    if let (Some(b), serde_json::Value::Object(s)) = (base.as_object_mut(), stats) {
        b.extend(s);
    }
    base
}

/// Runs `f` once to warm up, then `iters` times; returns the last result and
/// the time of each timed call in milliseconds.
fn timed<T>(iters: usize, mut f: impl FnMut() -> T) -> (T, Vec<f64>) {
    let mut out = f();
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        out = std::hint::black_box(f());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (out, times)
}

/// The luma plane `pdqhash.compute` hands to the C++ core:
/// `(R*0.299 + G*0.587 + B*0.114).astype('float32')` evaluated by numpy in
/// float64, left to right.
fn numpy_luma(rgb: &[u8]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| {
            (f64::from(p[0]) * 0.299 + f64::from(p[1]) * 0.587 + f64::from(p[2]) * 0.114) as f32
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    if let Some(dir) = &args.write {
        std::fs::create_dir_all(dir)?;
    }
    for (w, h) in pixels::SIZES {
        let rgb = pixels::bench_rgb(w, h);
        if let Some(dir) = &args.write {
            std::fs::write(format!("{dir}/rgb-{w}x{h}.raw"), &rgb)?;
        }
        let mut hasher = PdqHasher::new();

        let mut plane = numpy_luma(&rgb);
        let np = hasher.hash_luma(&mut plane, h, w);

        let (out, mut times) = timed(args.iters, || {
            hasher.hash_pixels(&rgb, w, h, PixelLayout::Rgb, Resolution::Full)
        });
        let line = json!({
            "impl": "hashfed",
            "buffer": format!("{w}x{h}"),
            "hash": out.hash.to_string(),
            "quality": out.quality,
            "hash_numpy_luma": np.hash.to_string(),
            "quality_numpy_luma": np.quality,
        });
        println!("{}", with_stats(line, stats(&mut times)));

        let (dih, mut times) = timed(args.iters, || {
            hasher.hash_pixels_dihedral(&rgb, w, h, PixelLayout::Rgb, Resolution::Full)
        });
        let mut plane = numpy_luma(&rgb);
        let np = hasher.hash_luma_dihedral(&mut plane, h, w);
        let hex =
            |hashes: &[PdqHash]| -> Vec<String> { hashes.iter().map(|x| x.to_string()).collect() };
        let line = json!({
            "impl": "hashfed-dihedral",
            "buffer": format!("{w}x{h}"),
            "hash": dih.hashes[0].to_string(),
            "hashes": hex(&dih.hashes),
            "quality": dih.quality,
            "hashes_numpy_luma": hex(&np.hashes),
            "quality_numpy_luma": np.quality,
        });
        println!("{}", with_stats(line, stats(&mut times)));
    }
    Ok(())
}
