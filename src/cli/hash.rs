//! `hashfed hash PATH...`: hash files, directories (recursively) and stdin.
//!
//! Text output is the reference hasher's (`pdq-photo-hasher`) format, one
//! `hash,quality,path` line per image (eight with `--dihedral`), so scripts
//! built on it keep working. `--json` prints one JSON object per line with
//! every hash. A file that fails prints an error and the batch goes on; the
//! exit code is 1 when any file failed.
//!
//! Work is split across all cores in chunks, and each chunk is printed in
//! input order, so output is deterministic and streams on huge directories.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use hashfed::signal::content::{hash_image, HashOptions, ImageHashes};
use hashfed::signal::decode::{DecodeError, DecodeLimits, DecodeOptions};
use hashfed::signal::exact::to_hex;
use hashfed::signal::pdq::{Dihedral, PdqHasher, Resolution};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;

/// Arguments of `hashfed hash`.
#[derive(Args, Debug)]
pub struct HashArgs {
    /// Files or directories (searched recursively); `-` reads one image from stdin.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// One JSON object per line: file, pdq, quality, md5, sha1, sha256, blake3.
    #[arg(long)]
    json: bool,
    /// Also output the eight dihedral PDQ hashes (rotations and flips).
    #[arg(long)]
    dihedral: bool,
    /// Hash every pixel instead of the reference CLI's 512×512 pre-resize.
    #[arg(long)]
    full_resolution: bool,
    /// Rotate and flip by the EXIF orientation tag first (the reference does not).
    #[arg(long)]
    apply_exif_orientation: bool,
    /// Worker threads (default: all cores).
    #[arg(long, short = 'j')]
    threads: Option<usize>,
    /// Largest file accepted, in bytes.
    #[arg(long, default_value_t = DecodeLimits::default().max_bytes)]
    max_bytes: usize,
    /// Largest image accepted, in pixels.
    #[arg(long, default_value_t = DecodeLimits::default().max_pixels)]
    max_pixels: u64,
}

/// One thing to hash.
#[derive(Debug, Clone)]
enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    fn display(&self) -> String {
        match self {
            Input::Stdin => "-".to_string(),
            Input::File(p) => p.display().to_string(),
        }
    }
}

/// Why one input produced no hashes.
#[derive(Debug, thiserror::Error)]
enum InputError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Decode(#[from] DecodeError),
}

/// Inputs per parallel chunk: large enough to keep every core busy, small
/// enough that output keeps flowing.
const CHUNK: usize = 256;

pub fn run(args: HashArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("starting worker threads")?;
    }
    let options = HashOptions {
        decode: DecodeOptions {
            limits: DecodeLimits {
                max_bytes: args.max_bytes,
                max_pixels: args.max_pixels,
                ..DecodeLimits::default()
            },
            apply_exif_orientation: args.apply_exif_orientation,
        },
        resolution: if args.full_resolution {
            Resolution::Full
        } else {
            Resolution::Cli512
        },
        dihedral: args.dihedral,
    };

    let mut failures = 0usize;
    let (inputs, walk_errors) = collect_inputs(&args.paths);
    for (path, err) in &walk_errors {
        report_error(&args, path, err, None)?;
        failures += 1;
    }

    let progress = progress_bar(inputs.len());
    let stdout = io::stdout();
    for chunk in inputs.chunks(CHUNK) {
        let results: Vec<Result<ImageHashes, InputError>> = chunk
            .par_iter()
            .map_init(PdqHasher::new, |hasher, input| {
                let bytes = read_input(input, options.decode.limits.max_bytes)?;
                Ok(hash_image(&bytes, &options, hasher)?)
            })
            .collect();
        let mut out = stdout.lock();
        for (input, result) in chunk.iter().zip(results) {
            match result {
                Ok(h) => write_hashes(&mut out, &args, &input.display(), &h)?,
                Err(e) => {
                    failures += 1;
                    report_error(&args, &input.display(), &e.to_string(), progress.as_ref())?;
                }
            }
        }
        out.flush().context("writing output")?;
        if let Some(p) = &progress {
            p.inc(chunk.len() as u64);
        }
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    if failures > 0 {
        eprintln!(
            "hashfed: {failures} of {} inputs failed",
            inputs.len() + walk_errors.len()
        );
        // An input that could not be hashed is an error (exit 2, as grep's
        // unreadable file), though the others were hashed.
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Expands directories (recursively, sorted, not following directory
/// symlinks so a link loop cannot trap us); unreadable paths become errors.
fn collect_inputs(paths: &[PathBuf]) -> (Vec<Input>, Vec<(String, String)>) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk(path, &mut inputs, &mut errors),
            Ok(_) => inputs.push(Input::File(path.clone())),
            Err(e) => errors.push((path.display().to_string(), e.to_string())),
        }
    }
    (inputs, errors)
}

fn walk(dir: &Path, inputs: &mut Vec<Input>, errors: &mut Vec<(String, String)>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            errors.push((dir.display().to_string(), e.to_string()));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => paths.push(e.path()),
            Err(e) => errors.push((dir.display().to_string(), e.to_string())),
        }
    }
    paths.sort();
    for path in paths {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => walk(&path, inputs, errors),
            Ok(m) if m.file_type().is_symlink() => {
                // Follow links to files; skip links to directories.
                if std::fs::metadata(&path).is_ok_and(|t| t.is_file()) {
                    inputs.push(Input::File(path));
                }
            }
            Ok(m) if m.is_file() => inputs.push(Input::File(path)),
            Ok(_) => {}
            Err(e) => errors.push((path.display().to_string(), e.to_string())),
        }
    }
}

/// Reads at most `max_bytes + 1` bytes, so an oversized input is detected
/// without being read whole.
fn read_input(input: &Input, max_bytes: usize) -> Result<Vec<u8>, InputError> {
    let cap = max_bytes as u64 + 1;
    let mut bytes = Vec::new();
    match input {
        Input::Stdin => {
            io::stdin().lock().take(cap).read_to_end(&mut bytes)?;
        }
        Input::File(path) => {
            let file = File::open(path)?;
            let len = file.metadata()?.len();
            if len > max_bytes as u64 {
                return Err(DecodeError::TooLarge {
                    size: len,
                    limit: max_bytes,
                }
                .into());
            }
            bytes.reserve(len as usize);
            file.take(cap).read_to_end(&mut bytes)?;
        }
    }
    Ok(bytes)
}

fn write_hashes(
    out: &mut impl Write,
    args: &HashArgs,
    name: &str,
    h: &ImageHashes,
) -> anyhow::Result<()> {
    if args.json {
        let mut obj = json!({
            "file": name,
            "pdq": h.pdq.hash.to_string(),
            "quality": h.pdq.quality,
            "md5": to_hex(&h.exact.md5),
            "sha1": to_hex(&h.exact.sha1),
            "sha256": to_hex(&h.exact.sha256),
            "blake3": to_hex(&h.exact.blake3),
            "width": h.width,
            "height": h.height,
            "format": h.format,
        });
        if let Some(d) = &h.dihedral {
            let variants: serde_json::Map<String, serde_json::Value> = Dihedral::ALL
                .iter()
                .map(|&v| (v.name().to_string(), json!(d.get(v).to_string())))
                .collect();
            obj["dihedral"] = serde_json::Value::Object(variants);
        }
        writeln!(out, "{obj}")?;
    } else if let Some(d) = &h.dihedral {
        for hash in d.hashes {
            writeln!(out, "{hash},{},{name}", d.quality)?;
        }
    } else {
        writeln!(out, "{},{},{name}", h.pdq.hash, h.pdq.quality)?;
    }
    Ok(())
}

fn report_error(
    args: &HashArgs,
    name: &str,
    err: &str,
    progress: Option<&ProgressBar>,
) -> anyhow::Result<()> {
    let line = format!("hashfed: {name}: {err}");
    match progress {
        Some(p) => p.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
    if args.json {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", json!({ "file": name, "error": err }))?;
    }
    Ok(())
}

/// A progress bar on stderr, only when it is a terminal and there is a batch.
fn progress_bar(total: usize) -> Option<ProgressBar> {
    if total < 2 || !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}
