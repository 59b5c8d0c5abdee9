//! Criterion benchmarks of our PDQ hash step on one thread: packed RGB bytes
//! → luma → hash and quality, at full resolution (no 512×512 pre-resize), the
//! eight dihedral hashes at full resolution, and, for reference, the same
//! step under the reference CLI's 512×512 convention.
//!
//! The buffers (512×512 and 1600×1004) come from `common/pixels.rs`, the
//! same deterministic generator `examples/pdq_time.rs` uses to write them for
//! Meta's reference, so `bash benches/reference/compare.sh` times both sides
//! on identical pixels and prints the ratio. Run with `cargo bench --bench pdq`
//! (about 30 s after the build).

#[path = "common/pixels.rs"]
mod pixels;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hashfed::signal::pdq::{PdqHasher, PixelLayout, Resolution};

fn hash_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("pdq_hash_step");
    for (w, h) in pixels::SIZES {
        let rgb = pixels::bench_rgb(w, h);
        let mut hasher = PdqHasher::new();
        group.throughput(Throughput::Elements((w * h) as u64));
        let id = format!("{w}x{h}");
        group.bench_with_input(BenchmarkId::new("full_resolution", &id), &rgb, |b, rgb| {
            b.iter(|| hasher.hash_pixels(black_box(rgb), w, h, PixelLayout::Rgb, Resolution::Full))
        });
        group.bench_with_input(
            BenchmarkId::new("dihedral_full_resolution", &id),
            &rgb,
            |b, rgb| {
                b.iter(|| {
                    let rgb = black_box(rgb);
                    hasher.hash_pixels_dihedral(rgb, w, h, PixelLayout::Rgb, Resolution::Full)
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("cli_512", &id), &rgb, |b, rgb| {
            b.iter(|| {
                hasher.hash_pixels(black_box(rgb), w, h, PixelLayout::Rgb, Resolution::Cli512)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Six benchmarks of 1 s warm-up + 3 s measurement, 30 samples each: well
    // under two minutes including the buffer generation.
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hash_step
}
criterion_main!(benches);
