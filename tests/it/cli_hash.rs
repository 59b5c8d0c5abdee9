//! The `hashfed hash` and `hashfed compare` commands, run as a user runs
//! them, on generated images and on hostile inputs.

use crate::common;

use std::io::{Cursor, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use image::{DynamicImage, ImageFormat, RgbImage};

fn hashfed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(args)
        .output()
        .expect("run hashfed")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn test_image(seed: u32) -> RgbImage {
    RgbImage::from_fn(300, 200, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) ^ (x * y / (seed + 3));
        image::Rgb([(v % 256) as u8, (x % 256) as u8, ((v / 3) % 256) as u8])
    })
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

/// Minimal CRC-32 (IEEE) so the test can forge PNG headers.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG that declares `w × h` pixels and carries almost no pixel data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // A first IDAT holding a zlib "stored" block of 100 zero bytes: the
    // start of an endless image of black pixels.
    let mut idat = b"IDAT\x78\x01\x01\x64\x00\x9b\xff".to_vec();
    idat.extend_from_slice(&[0u8; 100]);
    idat.extend_from_slice(&((100u32 << 16) | 1).to_be_bytes());
    png.extend_from_slice(&(idat.len() as u32 - 4).to_be_bytes());
    png.extend_from_slice(&idat);
    png.extend_from_slice(&crc32(&idat).to_be_bytes());
    png
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn json_lines_carry_every_hash_and_directories_are_walked_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(
        dir.path(),
        "b.png",
        &encode(&test_image(1), ImageFormat::Png),
    );
    write(
        &dir.path().join("sub"),
        "a.jpg",
        &encode(&test_image(2), ImageFormat::Jpeg),
    );
    write(
        dir.path(),
        "a.bmp",
        &encode(&test_image(3), ImageFormat::Bmp),
    );

    let out = hashfed(&[
        "hash",
        "--json",
        "--dihedral",
        &dir.path().display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let files: Vec<&str> = lines.iter().map(|l| l["file"].as_str().unwrap()).collect();
    assert_eq!(files.len(), 3);
    assert!(
        files[0].ends_with("a.bmp")
            && files[1].ends_with("b.png")
            && files[2].ends_with("sub/a.jpg")
    );
    for l in &lines {
        for (key, len) in [
            ("pdq", 64),
            ("md5", 32),
            ("sha1", 40),
            ("sha256", 64),
            ("blake3", 64),
        ] {
            assert_eq!(l[key].as_str().unwrap().len(), len, "{key} in {l}");
        }
        assert!(l["quality"].as_u64().unwrap() <= 100);
        assert_eq!(l["dihedral"]["orig"], l["pdq"]);
        assert_eq!(l["dihedral"].as_object().unwrap().len(), 8);
    }
    // The exact hashes are of the file bytes.
    let bmp = std::fs::read(dir.path().join("a.bmp")).unwrap();
    let expected = hashfed::signal::exact::ExactDigests::of(&bmp);
    assert_eq!(
        lines[0]["sha256"],
        hashfed::signal::exact::to_hex(&expected.sha256)
    );
}

#[test]
fn text_output_is_the_reference_format() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "x.png",
        &encode(&test_image(4), ImageFormat::Png),
    );
    let out = hashfed(&["hash", &file]);
    assert!(out.status.success());
    let text = stdout(&out);
    let fields: Vec<&str> = text.trim_end().split(',').collect();
    assert_eq!(fields.len(), 3);
    assert_eq!(fields[0].len(), 64);
    assert_eq!(fields[2], file);

    let out = hashfed(&["hash", "--dihedral", &file]);
    assert_eq!(stdout(&out).lines().count(), 8);
}

#[test]
fn a_bad_file_is_reported_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let good1 = write(
        dir.path(),
        "1.png",
        &encode(&test_image(5), ImageFormat::Png),
    );
    let bad = write(dir.path(), "2.jpg", b"not a jpeg at all");
    let good2 = write(
        dir.path(),
        "3.png",
        &encode(&test_image(6), ImageFormat::Png),
    );
    let missing = dir.path().join("nope.png").display().to_string();

    let out = hashfed(&["hash", &good1, &bad, &missing, &good2]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "any failure is an error: exit code 2"
    );
    assert_eq!(stdout(&out).lines().count(), 2, "both good files hashed");
    let err = stderr(&out);
    assert!(err.contains("2.jpg: unrecognised image format"), "{err}");
    assert!(err.contains("nope.png"), "{err}");
    assert!(err.contains("2 of 4 inputs failed"), "{err}");

    let out = hashfed(&["hash", "--json", &bad]);
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(line["error"].as_str().unwrap().contains("unrecognised"));
}

#[test]
fn hostile_inputs_get_clear_errors_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = encode(&test_image(7), ImageFormat::Jpeg);
    let png = encode(&test_image(8), ImageFormat::Png);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.png", Vec::new(), "empty input"),
        (
            "huge.png",
            png_header_only(50_000, 50_000),
            "over the limit of",
        ),
        (
            "truncated.png",
            png[..png.len() / 2].to_vec(),
            "malformed png",
        ),
        ("header-only.jpg", jpeg[..200].to_vec(), "malformed jp"),
        (
            "garbage.bin",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            "unrecognised",
        ),
        (
            "image.qoi",
            b"qoif\0\0\0\x10\0\0\0\x10\x03\x00".to_vec(),
            "unsupported image format qoi",
        ),
    ];
    for (name, bytes, expected) in &cases {
        let path = write(dir.path(), name, bytes);
        let out = hashfed(&["hash", &path]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in {err:?}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn oversized_files_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "big.png",
        &encode(&test_image(10), ImageFormat::Png),
    );
    let out = hashfed(&["hash", "--max-bytes", "1000", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("over the limit of 1000 bytes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stdin_is_hashed_like_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = encode(&test_image(11), ImageFormat::Png);
    let path = write(dir.path(), "s.png", &bytes);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(["hash", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    assert!(from_stdin.status.success());
    let from_file = hashfed(&["hash", &path]);
    let hash = |o: &Output| stdout(o).split(',').next().unwrap().to_string();
    assert_eq!(hash(&from_stdin), hash(&from_file));
    assert!(stdout(&from_stdin).trim_end().ends_with(",-"));
}

#[test]
fn compare_prints_the_distance_and_refuses_malformed_hashes() {
    let a = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
    let b = "d8f8f0cee0f4a84f0637022a038f67f0b36e2ed596631e1d33e6339c4e9c9b22";
    let out = hashfed(&["compare", "--quiet", a, b]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "2");

    let out = hashfed(&["compare", a, "xyz"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("64 hex digits"), "{}", stderr(&out));
}

/// End to end on Meta's sample images through the real binary, when present.
#[test]
fn cli_hashes_the_reference_images() {
    let Some(dir) = common::vectors_dir("cli_hashes_the_reference_images") else {
        return;
    };
    let file = dir.join("pdq/data/reg-test-input/dih/bridge-1-original.jpg");
    let out = hashfed(&["hash", &file.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out)
        .starts_with("d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22,100,"));
}
