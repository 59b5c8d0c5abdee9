//! Every hash of one piece of content: exact digests of the bytes and, when
//! the bytes are an image, its PDQ hash (and optionally the dihedral variants).
//!
//! This is what `hashfed hash` prints and what a node computes when a local
//! service sends image bytes instead of hashes.

use super::decode::{decode, DecodeError, DecodeOptions};
use super::exact::ExactDigests;
use super::pdq::{PdqDihedral, PdqHasher, PdqOutput, Resolution};

/// What to compute for each piece of content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashOptions {
    /// Decoding limits and EXIF handling.
    pub decode: DecodeOptions,
    /// The 512×512 CLI convention (default) or full resolution.
    pub resolution: Resolution,
    /// Also compute the eight dihedral PDQ hashes.
    pub dihedral: bool,
}

/// The hashes of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageHashes {
    /// Exact digests of the encoded bytes.
    pub exact: ExactDigests,
    /// PDQ hash and quality.
    pub pdq: PdqOutput,
    /// The eight dihedral hashes, when asked for.
    pub dihedral: Option<PdqDihedral>,
    /// Decoded width.
    pub width: usize,
    /// Decoded height.
    pub height: usize,
    /// Detected container format.
    pub format: &'static str,
}

/// Hashes one encoded image. The PDQ scratch space in `hasher` is reused.
pub fn hash_image(
    bytes: &[u8],
    options: &HashOptions,
    hasher: &mut PdqHasher,
) -> Result<ImageHashes, DecodeError> {
    // Size limits apply before any work, including the exact digests.
    let img = decode(bytes, &options.decode)?;
    let exact = ExactDigests::of(bytes);
    let (pdq, dihedral) = if options.dihedral {
        let (plain, d) = hasher.hash_pixels_with_dihedral(
            &img.pixels,
            img.width,
            img.height,
            img.layout,
            options.resolution,
        );
        (plain, Some(d))
    } else {
        let o = hasher.hash_pixels(
            &img.pixels,
            img.width,
            img.height,
            img.layout,
            options.resolution,
        );
        (o, None)
    };
    Ok(ImageHashes {
        exact,
        pdq,
        dihedral,
        width: img.width,
        height: img.height,
        format: img.format,
    })
}
