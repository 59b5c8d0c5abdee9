//! Criterion benchmarks of the PDQ hash step (one thread) on the shared
//! benchmark buffers: RGB bytes → luma → hash and quality, at full resolution
//! and under the reference CLI's 512×512 convention, plus the eight dihedral
//! hashes. `bash benches/reference/compare.sh` puts the same buffers through
//! Meta's C++ core for the side-by-side ratio.

#[path = "common/pixels.rs"]
mod pixels;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hashfed::signal::pdq::{PdqHasher, PixelLayout, Resolution};

fn hash_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("pdq_hash_step");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    for (w, h) in pixels::SIZES {
        let rgb = pixels::bench_rgb(w, h);
        let mut hasher = PdqHasher::new();
        group.throughput(Throughput::Elements((w * h) as u64));
        let id = format!("{w}x{h}");
        group.bench_with_input(BenchmarkId::new("full_resolution", &id), &rgb, |b, rgb| {
            b.iter(|| hasher.hash_pixels(rgb, w, h, PixelLayout::Rgb, Resolution::Full))
        });
        group.bench_with_input(BenchmarkId::new("cli_512", &id), &rgb, |b, rgb| {
            b.iter(|| hasher.hash_pixels(rgb, w, h, PixelLayout::Rgb, Resolution::Cli512))
        });
        group.bench_with_input(
            BenchmarkId::new("dihedral_full_resolution", &id),
            &rgb,
            |b, rgb| {
                b.iter(|| {
                    hasher.hash_pixels_dihedral(rgb, w, h, PixelLayout::Rgb, Resolution::Full)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, hash_step);
criterion_main!(benches);
