//! PDQ against Meta's C++ reference, using the vectors in `../shared/pdq-vectors`
//! (or `HASHFED_TEST_VECTORS`).
//!
//! * bit-exact hash and quality on the exact pixel buffers the reference hashed;
//! * bit-exact float32 intermediate stages (luma, 64×64, 16×16 DCT, median);
//! * bit-exact dihedral hashes;
//! * end to end from the image files through our decoder: lossless formats
//!   exact, JPEGs within Meta's criterion (≤ 10 bits where quality ≥ 80).

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use hashfed::signal::content::{hash_image, HashOptions};
use hashfed::signal::decode::{decode, DecodeOptions, DecodedImage};
use hashfed::signal::pdq::{self, Dihedral, PdqHash, PdqHasher, Resolution};

fn load_refinput(dir: &Path, stem: &str) -> DecodedImage {
    let base = dir.join("derived/refinput/repo");
    let path = ["ppm", "pgm"]
        .iter()
        .map(|ext| base.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no refinput buffer for {stem}"));
    let bytes = std::fs::read(&path).unwrap();
    decode(&bytes, &DecodeOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Rows of a tab-separated file with a header, as column-name maps.
fn read_tsv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .map(|h| h.to_string())
                .zip(l.split('\t').map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn bit_exact_on_every_reference_pixel_buffer() {
    let Some(dir) = common::vectors_dir("bit_exact_on_every_reference_pixel_buffer") else {
        return;
    };
    let csv =
        std::fs::read_to_string(dir.join("derived/refinput/repo_refinput_expected.csv")).unwrap();
    let mut hasher = PdqHasher::new();
    let mut checked = 0;
    for line in csv.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.split(',');
        let (hash, quality, file) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let stem = file.rsplit_once('.').unwrap().0;
        let img = load_refinput(&dir, stem);
        let out = hasher.hash_pixels(
            &img.pixels,
            img.width,
            img.height,
            img.layout,
            Resolution::Cli512,
        );
        assert_eq!(out.hash.to_string(), hash, "{file}: hash");
        assert_eq!(out.quality.to_string(), quality, "{file}: quality");
        checked += 1;
    }
    assert_eq!(checked, 49, "every buffer in repo_refinput_expected.csv");
}

#[test]
fn dihedral_hashes_are_bit_exact() {
    let Some(dir) = common::vectors_dir("dihedral_hashes_are_bit_exact") else {
        return;
    };
    let mut hasher = PdqHasher::new();
    let rows = read_tsv(&dir.join("expected_dihedral.tsv"));
    assert!(rows.len() >= 40);
    for row in &rows {
        let repo_path = &row["repo_path"];
        let img = load_refinput(&dir, &common::refinput_stem(repo_path));
        let got = hasher.hash_pixels_dihedral(
            &img.pixels,
            img.width,
            img.height,
            img.layout,
            Resolution::Cli512,
        );
        let columns = [
            "orig",
            "rot90",
            "rot180",
            "rot270",
            "flipx",
            "flipy",
            "flipplus1",
            "flipminus1",
        ];
        for (d, col) in Dihedral::ALL.iter().zip(columns) {
            assert_eq!(d.name(), col);
            assert_eq!(got.get(*d).to_string(), row[col], "{repo_path}: {col}");
        }
        assert_eq!(
            got.quality.to_string(),
            row["quality"],
            "{repo_path}: quality"
        );
    }
}

#[test]
fn dct_matrix_bits_are_exact() {
    let Some(dir) = common::vectors_dir("dct_matrix_bits_are_exact") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("derived/dct_matrix_16x64_f32_bits.txt")).unwrap();
    let expected: Vec<u32> = text
        .split_whitespace()
        .filter_map(|t| u32::from_str_radix(t, 16).ok())
        .collect();
    let ours: Vec<u32> = pdq::dct_matrix()
        .iter()
        .flatten()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(expected.len(), 16 * 64);
    assert_eq!(ours, expected);
}

fn assert_bits_equal(what: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{what}: element {i}: ours {a:e}, reference {b:e}"
        );
    }
}

#[test]
fn intermediate_stages_equal_the_reference_float32() {
    let Some(dir) = common::vectors_dir("intermediate_stages_equal_the_reference_float32") else {
        return;
    };
    for (name, stem) in [
        ("bridge-1-original", "reg-test-input_dih_bridge-1-original"),
        ("q1050", "reg-test-input_labelme-subset_q1050"),
    ] {
        let stages = dir.join("derived/stages");
        let img = load_refinput(&dir, stem);
        let (mut luma, rows, cols) = pdq::luma_plane(
            &img.pixels,
            img.width,
            img.height,
            img.layout,
            Resolution::Cli512,
        );
        assert_bits_equal(
            &format!("{name} luma"),
            &luma,
            &common::read_floats(&stages.join(format!("{name}.luma.txt"))),
        );

        let small = pdq::blur_and_decimate(&mut luma, rows, cols, &mut pdq::BlurScratch::default());
        let small_flat: Vec<f32> = small.iter().flatten().copied().collect();
        assert_bits_equal(
            &format!("{name} 64x64"),
            &small_flat,
            &common::read_floats(&stages.join(format!("{name}.64x64.txt"))),
        );

        let dct = pdq::dct64_to_16(&small);
        let dct_flat: Vec<f32> = dct.iter().flatten().copied().collect();
        let dct_path = stages.join(format!("{name}.dct16x16.txt"));
        assert_bits_equal(
            &format!("{name} dct"),
            &dct_flat,
            &common::read_floats(&dct_path),
        );

        let text = std::fs::read_to_string(&dct_path).unwrap();
        let median: f32 = text
            .lines()
            .find_map(|l| l.strip_prefix("# torben median = "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            pdq::torben_median(&dct_flat).to_bits(),
            median.to_bits(),
            "{name} median"
        );
    }
}

/// Hashes every image file with our decoder under both conventions and
/// compares with the reference's columns.
#[test]
fn end_to_end_from_image_files() {
    let Some(dir) = common::vectors_dir("end_to_end_from_image_files") else {
        return;
    };
    let rows = read_tsv(&dir.join("expected.tsv"));
    let mut hasher = PdqHasher::new();
    let (mut jpegs, mut jpeg_exact, mut worst) = (0, 0, 0);
    let mut report = Vec::new();
    for row in &rows {
        let repo_path = &row["repo_path"];
        let bytes = std::fs::read(dir.join(repo_path)).unwrap();
        for (resolution, hash_col, q_col) in [
            (Resolution::Cli512, "cli_pdq_hex", "cli_quality"),
            (
                Resolution::Full,
                "core_fullres_pdq_hex",
                "core_fullres_quality",
            ),
        ] {
            let options = HashOptions {
                resolution,
                ..HashOptions::default()
            };
            let got = hash_image(&bytes, &options, &mut hasher)
                .unwrap_or_else(|e| panic!("{repo_path}: {e}"));
            let expected: PdqHash = row[hash_col].parse().unwrap();
            let expected_q: u8 = row[q_col].parse().unwrap();
            let distance = got.pdq.hash.distance(&expected);
            assert_eq!(
                (got.width, got.height),
                (
                    row["width"].parse().unwrap(),
                    row["height"].parse().unwrap()
                ),
                "{repo_path}: dimensions"
            );
            if got.format == "jpg" {
                jpegs += 1;
                jpeg_exact += usize::from(distance == 0);
                worst = worst.max(distance);
                // Meta's criterion for a correct port, with a different decoder.
                if expected_q >= 80 {
                    assert!(
                        distance <= 10,
                        "{repo_path} ({hash_col}): {distance} bits from the reference"
                    );
                }
            } else if got.format == "png" {
                assert_eq!(
                    distance, 0,
                    "{repo_path} ({hash_col}): lossless, must be exact"
                );
                assert_eq!(
                    got.pdq.quality, expected_q,
                    "{repo_path} ({hash_col}): quality"
                );
            } else {
                // WebP: lossy variants decode slightly differently from libwebp.
                assert!(
                    distance <= 10,
                    "{repo_path} ({hash_col}): {distance} bits from the reference"
                );
            }
            report.push(format!(
                "{:>3} bits  {:<12} {repo_path}",
                distance,
                hash_col.split('_').next().unwrap()
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
    eprintln!(
        "JPEG hashes exactly equal to the reference: {jpeg_exact} of {jpegs}; worst {worst} bits"
    );
}
