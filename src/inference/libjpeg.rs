//! JPEG decoding with OpenCV's pixels, for models fed exactly as the Python original
//! feeds them ([`super::decode::DecodePlan::LikeOpenCv`]).
//!
//! Owns: libjpeg-turbo's decoder (mozjpeg's fork of it, built from vendored C source
//! by `mozjpeg-sys`, without SIMD) run with the settings of OpenCV's `cv2.imread`: full
//! size, the accurate integer IDCT (`JDCT_ISLOW`), fancy (triangular) chroma
//! upsampling, libjpeg's own YCbCr→RGB. OpenCV asks libjpeg-turbo for BGR; the same
//! conversion written in RGB order gives the same bytes. Grey files stay grey (OpenCV
//! repeats the grey level in B, G and R, as the pipeline's conversion to RGB does).
//!
//! Owns too the containment of libjpeg's errors. libjpeg reports a fatal error by
//! calling `error_exit`, whose default ends the process; the `mozjpeg` wrapper's error
//! manager unwinds instead (C compiled with `-fexceptions`) without running the panic
//! hook, and [`decode_like_opencv`] catches it into a [`LibjpegError`]. libjpeg's
//! warnings cannot be seen without `unsafe` code (this crate forbids it): the wrapper
//! drops them. The one that matters, a file cut short (libjpeg would fake the end of
//! the file and fill the rest with grey, and so would OpenCV), is found before
//! decoding by walking the file's markers up to its end-of-image marker
//! ([`check_complete`]). Corrupt entropy-coded data inside a complete file is decoded
//! as libjpeg and OpenCV decode it.
//!
//! Reads too the EXIF orientation tag that `imread` applies ([`exif_orientation`]; the
//! turn itself is `decode`'s).
//!
//! The same decoder, with the same settings, also decodes large photos at 1/2, 1/4 or
//! 1/8 in the DCT domain for the line models ([`decode_scaled`]: libjpeg's reduced
//! IDCTs; the caller chooses the factor).
//!
//! Must never: let a libjpeg error or panic leave [`decode_like_opencv`] or
//! [`decode_scaled`] (no exit, no unwind into a worker), decode a side above the
//! caller's limit, or decide which models get this decoder or at what scale (the
//! pipeline and `decode` do, from the models' metadata).

use std::panic::catch_unwind;

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg::{ColorSpace, DctMethod, Decompress};

/// Why a JPEG could not be decoded like OpenCV decodes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibjpegError {
    /// The marker walk ran off the end of the data before the end-of-image marker.
    #[error("truncated JPEG: the file ends before its end-of-image marker")]
    Truncated,
    /// A fatal libjpeg error (its message).
    #[error("damaged or unsupported JPEG: {0}")]
    Damaged(String),
    #[error("JPEG of {width}x{height} pixels: larger than {max} a side")]
    TooLarge {
        width: usize,
        height: usize,
        max: usize,
    },
    /// A colour model other than YCbCr, RGB or grey (CMYK, YCCK): OpenCV converts
    /// those with its own code, not libjpeg's; the caller decides what to do.
    #[error("JPEG colour model {0} is not decoded by libjpeg here")]
    ColourModel(&'static str),
    /// Fewer pixels than the header promised.
    #[error("JPEG decoding failed: {0}")]
    Failed(String),
}

/// One marker segment of a JPEG: the marker's code and the segment's body (after its
/// two length bytes).
struct Segment<'a> {
    marker: u8,
    body: &'a [u8],
}

/// The marker segments of a JPEG in file order, after its start-of-image marker, read
/// as libjpeg reads them: junk and fill bytes between segments are skipped, stand-alone
/// markers (restart, TEM) carry no segment, and the entropy-coded data after each
/// start-of-scan is skipped up to the next real marker (a 0xFF not followed by 0x00
/// stuffing, a restart marker or fill). Ends after the end-of-image marker (bytes
/// after it are ignored, as libjpeg ignores them); yields
/// [`LibjpegError::Truncated`] once, and ends, when the data runs out first.
struct Segments<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The last segment was a start-of-scan: its entropy-coded data comes next.
    in_scan: bool,
    done: bool,
}

fn segments(bytes: &[u8]) -> Segments<'_> {
    Segments {
        bytes,
        pos: 2, // after SOI
        in_scan: false,
        done: false,
    }
}

impl<'a> Segments<'a> {
    fn next_ff(&self, from: usize) -> Option<usize> {
        self.bytes
            .get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == 0xFF))
            .map(|i| from + i)
    }

    /// Past the entropy-coded data that starts at `pos`, onto the next real marker.
    fn skip_scan(&mut self) -> Option<()> {
        loop {
            let ff = self.next_ff(self.pos)?;
            match self.bytes.get(ff + 1)? {
                0x00 | 0xD0..=0xD7 | 0xFF => self.pos = ff + 1,
                _ => {
                    self.pos = ff;
                    return Some(());
                }
            }
        }
    }

    /// The next segment; `Ok(None)` after the end-of-image marker, `Err(())` when the
    /// data runs out first.
    fn read(&mut self) -> Result<Option<Segment<'a>>, ()> {
        let bytes = self.bytes;
        if std::mem::take(&mut self.in_scan) {
            self.skip_scan().ok_or(())?;
        }
        loop {
            let mut at = self.next_ff(self.pos).ok_or(())?;
            while bytes.get(at + 1) == Some(&0xFF) {
                at += 1;
            }
            let marker = *bytes.get(at + 1).ok_or(())?;
            self.pos = at + 2;
            match marker {
                0xD9 => return Ok(None),
                // Stand-alone markers (restart, TEM) and a stray stuffed 0x00.
                0xD0..=0xD7 | 0x01 | 0x00 => continue,
                _ => {}
            }
            let len = bytes.get(self.pos..self.pos + 2).ok_or(())?;
            let end = self.pos + usize::from(u16::from_be_bytes([len[0], len[1]]));
            let body = bytes.get(self.pos + 2..end).ok_or(())?;
            self.pos = end;
            self.in_scan = marker == 0xDA;
            return Ok(Some(Segment { marker, body }));
        }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = Result<Segment<'a>, LibjpegError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let read = self.read();
        self.done = !matches!(read, Ok(Some(_)));
        read.map_err(|()| LibjpegError::Truncated).transpose()
    }
}

/// Ok when the JPEG's segments lead to an end-of-image marker ([`Segments`]),
/// [`LibjpegError::Truncated`] when the data ends first.
pub fn check_complete(bytes: &[u8]) -> Result<(), LibjpegError> {
    segments(bytes).try_for_each(|segment| segment.map(drop))
}

/// Decodes JPEG `bytes` at full size exactly as OpenCV's `imread` (module doc): RGB
/// for YCbCr and RGB files, grey for grey ones; a side above `max_side` pixels is
/// refused before decoding. Never panics, never exits.
pub fn decode_like_opencv(bytes: &[u8], max_side: u32) -> Result<DynamicImage, LibjpegError> {
    decode_scaled(bytes, max_side, 1)
}

/// Decodes JPEG `bytes` at 1/`factor` of their size (1, 2, 4 or 8; each side
/// `ceil(side / factor)`) with the settings of [`decode_like_opencv`], which is
/// `factor` 1. Never panics, never exits.
pub fn decode_scaled(
    bytes: &[u8],
    max_side: u32,
    factor: u32,
) -> Result<DynamicImage, LibjpegError> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(LibjpegError::Damaged("not a JPEG file".to_owned()));
    }
    let eighths = match factor {
        1 | 2 | 4 | 8 => (8 / factor) as u8,
        _ => return Err(LibjpegError::Failed(format!("no 1/{factor} scale"))),
    };
    check_complete(bytes)?;
    catch_unwind(|| decode_unguarded(bytes, max_side as usize, eighths))
        .unwrap_or_else(|payload| Err(LibjpegError::Damaged(panic_text(payload.as_ref()))))
}

/// The orientation a JPEG's EXIF block asks for (tag 0x0112 of the first APP1
/// "Exif" segment before the first scan), which OpenCV's `imread` applies by default;
/// `None` when there is no such tag or it cannot be read (no turn).
pub fn exif_orientation(bytes: &[u8]) -> Option<Orientation> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let exif = segments(bytes)
        .map_while(Result::ok)
        .take_while(|s| s.marker != 0xDA)
        .find_map(|s| {
            (s.marker == 0xE1)
                .then(|| s.body.strip_prefix(b"Exif\0\0"))
                .flatten()
        })?;
    Orientation::from_exif_chunk(exif)
}

/// A JPEG's width and height from its frame header (the first start-of-frame
/// segment), or `None` when `bytes` are not a JPEG or have no readable one.
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    // SOF0..SOF15, but not DHT (C4), JPG (C8) or DAC (CC), which share the range.
    let frame = segments(bytes)
        .map_while(Result::ok)
        .take_while(|s| s.marker != 0xDA)
        .find(|s| matches!(s.marker, 0xC0..=0xCF) && !matches!(s.marker, 0xC4 | 0xC8 | 0xCC))?;
    let b = frame.body;
    let height = u16::from_be_bytes([*b.get(1)?, *b.get(2)?]);
    let width = u16::from_be_bytes([*b.get(3)?, *b.get(4)?]);
    Some((u32::from(width), u32::from(height)))
}

/// The text of what unwound out of the decoder: the wrapper's "libjpeg fatal error:
/// …" message (a `String`), or a panic's message.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "the JPEG decoder failed".to_owned()
    }
}

fn decode_unguarded(bytes: &[u8], max: usize, eighths: u8) -> Result<DynamicImage, LibjpegError> {
    let io = |e: std::io::Error| LibjpegError::Failed(e.to_string());
    let mut header = Decompress::new_mem(bytes).map_err(io)?;
    let (width, height) = header.size();
    if width > max || height > max {
        return Err(LibjpegError::TooLarge { width, height, max });
    }
    // OpenCV's settings, which are also libjpeg's defaults: say them anyway.
    header.dct_method(DctMethod::IntegerSlow);
    header.do_fancy_upsampling(true);
    header.scale(eighths);
    let grey = match header.color_space() {
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => false,
        ColorSpace::JCS_GRAYSCALE => true,
        ColorSpace::JCS_CMYK => return Err(LibjpegError::ColourModel("CMYK")),
        ColorSpace::JCS_YCCK => return Err(LibjpegError::ColourModel("YCCK")),
        _ => return Err(LibjpegError::ColourModel("unknown")),
    };
    let mut started = if grey {
        header.grayscale()
    } else {
        header.rgb()
    }
    .map_err(io)?;
    let (w, h) = (started.width(), started.height());
    let scaled = |side: usize| (side * usize::from(eighths)).div_ceil(8);
    if (w, h) != (scaled(width), scaled(height)) {
        return Err(LibjpegError::Failed(format!(
            "{width}x{height} at {eighths}/8 came out {w}x{h}"
        )));
    }
    let pixels: Vec<u8> = started.read_scanlines().map_err(io)?;
    started.finish().map_err(io)?;
    let short = || LibjpegError::Failed(format!("fewer pixels than {w}x{h}"));
    let (w32, h32) = (
        u32::try_from(w).map_err(|_| short())?,
        u32::try_from(h).map_err(|_| short())?,
    );
    let image = if grey {
        DynamicImage::ImageLuma8(GrayImage::from_raw(w32, h32, pixels).ok_or_else(short)?)
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(w32, h32, pixels).ok_or_else(short)?)
    };
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line-camera sample shipped in `samples/` (baseline, 4:2:0).
    fn sample() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/normal_01.jpg");
        std::fs::read(path).expect("samples/normal_01.jpg")
    }

    fn decode(bytes: &[u8]) -> Result<DynamicImage, LibjpegError> {
        decode_like_opencv(bytes, 16_384)
    }

    #[test]
    fn decodes_rgb_and_grey_at_full_size() {
        let bytes = sample();
        let img = decode(&bytes).expect("decode");
        let rgb = img.as_rgb8().expect("rgb");
        let other = image::load_from_memory(&bytes).expect("zune").to_rgb8();
        assert_eq!(rgb.dimensions(), other.dimensions());
        // A side limit below the photo's: refused before decoding.
        let (w, h) = rgb.dimensions();
        assert_eq!(
            decode_like_opencv(&bytes, w.min(h) - 1).map(drop),
            Err(LibjpegError::TooLarge {
                width: w as usize,
                height: h as usize,
                max: w.min(h) as usize - 1,
            })
        );
        // Same file through another decoder: a few levels apart at most.
        let worst = rgb
            .as_raw()
            .iter()
            .zip(other.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max();
        assert!(worst.is_some_and(|w| w <= 8), "{worst:?}");

        let grey = GrayImage::from_fn(64, 40, |x, _| image::Luma([(x * 4) as u8]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut out)
            .encode_image(&grey)
            .expect("encode");
        let img = decode(&out).expect("grey");
        assert_eq!(img.as_luma8().map(|g| g.dimensions()), Some((64, 40)));
    }

    #[test]
    fn a_truncated_file_is_an_error_not_grey_pixels() {
        let bytes = sample();
        for cut in [3, 40, bytes.len() / 3, bytes.len() - 2, bytes.len() - 1] {
            let got = decode(&bytes[..cut]).map(drop);
            assert_eq!(got, Err(LibjpegError::Truncated), "cut at {cut}");
        }
        // Whole file, and junk after its end-of-image marker (ignored).
        assert_eq!(check_complete(&bytes), Ok(()));
        let mut tail = bytes.clone();
        tail.extend_from_slice(b"\0\xFFjunk");
        assert_eq!(decode(&tail), decode(&bytes));
    }

    #[test]
    fn garbage_and_corrupt_headers_are_errors() {
        for bad in [
            &b""[..],
            b"\xFF\xD8",
            b"\xFF\xD8\xFFnot a jpeg at all",
            b"\x89PNG\r\n\x1a\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let bytes = sample();
        let sof = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("SOF0");
        // 7-bit samples; then a frame 0 pixels wide. libjpeg's fatal errors, caught.
        // (frame header bytes, their new value, what libjpeg says)
        for (at, value, says) in [(4..5, 7, "precision"), (7..9, 0, "Empty")] {
            let mut bad = bytes.clone();
            bad[sof + at.start..sof + at.end].fill(value);
            match decode(&bad).map(drop) {
                Err(LibjpegError::Damaged(message)) => {
                    assert!(message.contains(says), "{message}")
                }
                other => panic!("{says}: {other:?}"),
            }
        }
    }

    #[test]
    fn scaled_decoding_gives_the_rounded_up_sides_and_the_same_picture() {
        let bytes = sample();
        let (w, h) = dimensions(&bytes).expect("header");
        let full = decode(&bytes).expect("full").to_rgb8();
        assert_eq!(full.dimensions(), (w, h));
        for factor in [2u32, 4, 8] {
            let img = decode_scaled(&bytes, 16_384, factor)
                .expect("scaled")
                .to_rgb8();
            assert_eq!(img.dimensions(), (w.div_ceil(factor), h.div_ceil(factor)));
            // Each scaled pixel is close to the mean of the full-size block it covers
            // (sample away from the edges, where blocks are cut).
            let (x, y) = (img.width() / 2, img.height() / 2);
            for c in 0..3 {
                let mut sum = 0u32;
                for dy in 0..factor {
                    for dx in 0..factor {
                        sum += u32::from(full.get_pixel(x * factor + dx, y * factor + dy)[c]);
                    }
                }
                let mean = sum / (factor * factor);
                let got = u32::from(img.get_pixel(x, y)[c]);
                assert!(
                    got.abs_diff(mean) <= 12,
                    "1/{factor} channel {c}: {got} vs {mean}"
                );
            }
        }
        assert!(matches!(
            decode_scaled(&bytes, 16_384, 3),
            Err(LibjpegError::Failed(_))
        ));
        assert_eq!(dimensions(b"not a jpeg"), None);
        assert_eq!(dimensions(&bytes[..20]), None);
    }
}
