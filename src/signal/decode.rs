//! Untrusted image bytes to 8-bit pixels, under limits.
//!
//! Every byte that reaches this module may be hostile: uploads, files handed to
//! the CLI, image bytes sent over gRPC. So the input size is checked before
//! anything is parsed, the declared dimensions are checked before any pixel
//! buffer is allocated (a 50000×50000 PNG header costs nothing to send and
//! 10 GB to decode), the decoder's own allocation limit is set, and a decoder
//! that panics is turned into an error rather than taking the node down.
//!
//! Pixels come out the way the reference hasher sees them: alpha dropped (not
//! composited), greyscale images on the grey path, everything else as RGB, and
//! EXIF orientation ignored unless asked for.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::pdq::PixelLayout;

/// Bounds on what one image may cost to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest encoded input accepted, in bytes.
    pub max_bytes: usize,
    /// Largest decoded image accepted, in pixels (width × height).
    pub max_pixels: u64,
    /// Largest single allocation the decoder may make, in bytes.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    /// 64 MiB of input, 100 megapixels (a 200 MP phone photo is refused; a
    /// 12,000×8,000 one is accepted), 1 GiB of decoder allocation.
    fn default() -> Self {
        DecodeLimits {
            max_bytes: 64 << 20,
            max_pixels: 100_000_000,
            max_alloc: 1 << 30,
        }
    }
}

/// Decoding options beyond the limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Limits on input and output size.
    pub limits: DecodeLimits,
    /// Rotate/flip according to the EXIF orientation tag. Off by default,
    /// because the reference (and so the hashes in existing lists) ignores it.
    pub apply_exif_orientation: bool,
}

/// An image as the hasher consumes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Grey (one byte per pixel) or RGB (three).
    pub layout: PixelLayout,
    /// Rows top to bottom, `width × height × layout.channels()` bytes.
    pub pixels: Vec<u8>,
    /// The container format that was detected, lower case (`"jpeg"`, `"png"`, …).
    pub format: &'static str,
}

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("empty input: no image data")]
    Empty,
    /// Over [`DecodeLimits::max_bytes`].
    #[error("input is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Actual or lower-bound size.
        size: u64,
        /// Configured limit.
        limit: usize,
    },
    /// Over [`DecodeLimits::max_pixels`] (the dimensions as declared by the header).
    #[error("image declares {width}×{height} pixels, over the limit of {limit} pixels")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// Configured limit.
        limit: u64,
    },
    /// A width or height of zero: nothing to hash (found by fuzzing: the
    /// PDQ resize step indexed an empty row).
    #[error("image declares {width}×{height} pixels: nothing to hash")]
    NoPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// Not a format we recognise from its first bytes.
    #[error("unrecognised image format (supported: JPEG, PNG, GIF, WebP, BMP, TIFF, PNM)")]
    UnknownFormat,
    /// A format we recognise but do not decode.
    #[error("unsupported image format {0}")]
    Unsupported(&'static str),
    /// The decoder refused the data (truncated, corrupt, or over the decoder's
    /// allocation limit).
    #[error("malformed {format} image: {reason}")]
    Malformed {
        /// Detected format.
        format: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// The decoder panicked on this input; the panic was contained.
    #[error("the {0} decoder failed on this input")]
    DecoderPanic(&'static str),
}

/// Decodes `bytes` into pixels the PDQ hasher can take.
pub fn decode(bytes: &[u8], options: &DecodeOptions) -> Result<DecodedImage, DecodeError> {
    let limits = &options.limits;
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len() as u64,
            limit: limits.max_bytes,
        });
    }
    let format = image::guess_format(bytes).map_err(|_| DecodeError::UnknownFormat)?;
    let name = format_name(format);
    if !SUPPORTED.contains(&format) {
        return Err(DecodeError::Unsupported(name));
    }
    let malformed = |e: image::ImageError| DecodeError::Malformed {
        format: name,
        reason: e.to_string(),
    };

    // Image decoders are large parsers of hostile data; contain any panic.
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        let mut decoder_limits = image::Limits::default();
        decoder_limits.max_alloc = Some(limits.max_alloc);
        reader.limits(decoder_limits);
        let mut decoder = reader.into_decoder().map_err(malformed)?;
        let (width, height) = decoder.dimensions();
        if width == 0 || height == 0 {
            return Err(DecodeError::NoPixels { width, height });
        }
        if u64::from(width) * u64::from(height) > limits.max_pixels {
            return Err(DecodeError::TooManyPixels {
                width,
                height,
                limit: limits.max_pixels,
            });
        }
        let orientation = if options.apply_exif_orientation {
            decoder.orientation().ok()
        } else {
            None
        };
        let mut img = DynamicImage::from_decoder(decoder).map_err(malformed)?;
        if let Some(o) = orientation {
            img.apply_orientation(o);
        }
        Ok(img)
    }))
    .map_err(|_| DecodeError::DecoderPanic(name))??;

    Ok(into_pixels(decoded, name))
}

const SUPPORTED: [ImageFormat; 7] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Gif,
    ImageFormat::WebP,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
    ImageFormat::Pnm,
];

fn format_name(format: ImageFormat) -> &'static str {
    format
        .extensions_str()
        .first()
        .copied()
        .unwrap_or("unknown")
}

/// Greyscale stays grey (the reference's grey path), alpha is dropped, and
/// deeper samples are reduced to 8 bits.
fn into_pixels(img: DynamicImage, format: &'static str) -> DecodedImage {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let grey = matches!(
        img,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    );
    let (layout, pixels) = if grey {
        (PixelLayout::Grey, img.into_luma8().into_raw())
    } else {
        (PixelLayout::Rgb, img.into_rgb8().into_raw())
    };
    DecodedImage {
        width,
        height,
        layout,
        pixels,
        format,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(img: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn rgba_drops_alpha_and_grey_stays_grey() {
        let rgba = image::RgbaImage::from_pixel(6, 5, image::Rgba([10, 20, 30, 0]));
        let d = decode(
            &png_bytes(DynamicImage::ImageRgba8(rgba)),
            &DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!(
            (d.width, d.height, d.layout, d.format),
            (6, 5, PixelLayout::Rgb, "png")
        );
        assert_eq!(&d.pixels[..3], &[10, 20, 30]);

        let grey = image::GrayAlphaImage::from_pixel(6, 5, image::LumaA([77, 1]));
        let d = decode(
            &png_bytes(DynamicImage::ImageLumaA8(grey)),
            &DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!(d.layout, PixelLayout::Grey);
        assert_eq!(d.pixels, vec![77; 30]);
    }

    #[test]
    fn limits_are_enforced_before_decoding() {
        let bytes = png_bytes(DynamicImage::ImageLuma8(image::GrayImage::new(100, 100)));
        let mut opts = DecodeOptions::default();
        opts.limits.max_pixels = 9_999;
        assert!(matches!(
            decode(&bytes, &opts),
            Err(DecodeError::TooManyPixels { .. })
        ));
        opts.limits.max_bytes = 10;
        assert!(matches!(
            decode(&bytes, &opts),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(decode(&[], &opts), Err(DecodeError::Empty)));
        // Found by fuzzing (match_requests): a 0×600 bitmap passed the
        // pixel limit and panicked in the PDQ resize step.
        for header in [&b"P4\n0 600\n"[..], b"P5\n600 0\n255\n", b"P4\n0 0\n"] {
            assert!(
                matches!(
                    decode(header, &DecodeOptions::default()),
                    Err(DecodeError::NoPixels { .. })
                ),
                "{:?}",
                decode(header, &DecodeOptions::default())
            );
        }
        assert!(matches!(
            decode(b"definitely not an image", &DecodeOptions::default()),
            Err(DecodeError::UnknownFormat)
        ));
    }
}
