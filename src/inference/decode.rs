//! Image decoding for the workers: JPEG photos much larger than the models need are
//! decoded at a reduced scale in the DCT domain; everything else at full size.
//!
//! The rule: a JPEG is decoded at the smallest of 1/2, 1/4, 1/8 whose short side
//! (`ceil(short / n)`) is still at least the pipeline's minimum short side
//! ([`crate::inference::Pipeline::min_decode_side`], computed once when the models
//! load); otherwise, and for PNG and every other format, at full size as before. The
//! scaled decode uses libjpeg-turbo's reduced IDCTs ([`super::libjpeg::decode_scaled`]:
//! an 8×8 block becomes 4×4, 2×2 or 1×1 pixels), which also spares the resize from
//! full size that would follow. (It was `jpeg-decoder`'s until libjpeg-turbo came in
//! for the original's models: same scales, its entropy decoding is faster;
//! `cargo bench --bench jpeg_decode`.)
//! A 2048×1536 photo with the line models (minimum 320) is decoded at 1/4, 512×384.
//!
//! Whatever the scale, the image keeps its [`DecodeScale`]: the factor and the source
//! size. The pipeline maps the detector's box back to *source* pixels with it (the
//! answered bbox does not depend on the scale) and maps the classifier's crop, chosen
//! in source pixels, onto the decoded pixels.
//!
//! Any surprise on the scaled path (a colour model other than YCbCr/RGB/grey, a size
//! libjpeg scales differently, a truncated file, any libjpeg error) falls back to the
//! full-size decode, whose errors are the ones answered.
//!
//! Models fed exactly as the Python original feeds them ([`DecodePlan::LikeOpenCv`])
//! get every JPEG at full size through libjpeg-turbo's decoder with OpenCV's settings
//! ([`super::libjpeg`]): the same pixels as the original's `cv2.imread`. Its errors
//! (a truncated or corrupt file) are answered; only a colour model it leaves to
//! OpenCV's own code (CMYK, YCCK) takes the ordinary full-size path. This module never
//! decides which plan a model gets: the pipeline does, from the models' metadata.
//!
//! On either plan a JPEG is then turned as its EXIF orientation tag says, as the
//! original's `cv2.imread` turns it ([`Decoded::oriented`]; a photo from a camera held
//! on its side is classified upright, and its box is in the upright photo's pixels).

use std::io::Cursor;

use image::error::{DecodingError, ImageFormatHint};
use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat};

use super::libjpeg::{self, LibjpegError};
use super::preprocess::{rect_window, Rect, Window};

/// Largest decoded image side, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// The JPEG signature (what `with_guessed_format` looks for).
const JPEG_SIGNATURE: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// The DCT scales the scaled path uses (libjpeg's 4/8, 2/8, 1/8), as divisors of the source size.
const FACTORS: [u32; 3] = [2, 4, 8];

/// How a decoded image relates to the file's (source) pixels: decoded pixel `(x, y)`
/// covers source pixels `factor·x .. factor·(x+1)` (the last column/row may be cut by
/// the source edge: decoded sides are `ceil(source / factor)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeScale {
    /// 1 (full size), 2, 4 or 8.
    pub factor: u32,
    pub source_width: u32,
    pub source_height: u32,
}

impl DecodeScale {
    /// An image decoded at full size.
    pub fn full(width: u32, height: u32) -> DecodeScale {
        DecodeScale {
            factor: 1,
            source_width: width,
            source_height: height,
        }
    }

    /// A box `[x1, y1, x2, y2]` in decoded pixels → source pixels, clamped to the source.
    /// Exact (a multiplication by 1.0) at full size.
    pub fn box_to_source(&self, b: [f32; 4]) -> [f32; 4] {
        let f = self.factor as f32;
        let (w, h) = (self.source_width as f32, self.source_height as f32);
        let s = |v: f32, hi: f32| (v * f).clamp(0.0, hi);
        [s(b[0], w), s(b[1], h), s(b[2], w), s(b[3], h)]
    }

    /// A rectangle of source pixels → the same rectangle in decoded pixels, edges
    /// divided by the factor (fractional: the classifier resamples exactly the source
    /// box, not one rounded to whole decoded pixels). [`rect_window`] at full size.
    pub fn rect_to_window(&self, r: Rect) -> Window {
        let f = f64::from(self.factor.max(1));
        rect_window(r).map(|v| v / f)
    }
}

/// A decoded image and how it maps to the source.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: DynamicImage,
    pub scale: DecodeScale,
}

impl Decoded {
    /// An image taken as it is (full size).
    pub fn full(image: DynamicImage) -> Decoded {
        let scale = DecodeScale::full(image.width(), image.height());
        Decoded { image, scale }
    }

    /// The image turned (rotated and/or mirrored) by `turn`; the source size turns
    /// with it, so boxes map to the source as the turned photo shows it (what the
    /// original answers: it turns the photo on reading).
    pub fn oriented(mut self, turn: Orientation) -> Decoded {
        self.image.apply_orientation(turn);
        if matches!(
            turn,
            Orientation::Rotate90
                | Orientation::Rotate270
                | Orientation::Rotate90FlipH
                | Orientation::Rotate270FlipH
        ) {
            let s = &mut self.scale;
            std::mem::swap(&mut s.source_width, &mut s.source_height);
        }
        self
    }
}

/// The largest factor of 1, 2, 4, 8 that keeps the short side of a `width` × `height`
/// image at or above `min_short_side` (1 when even 1/2 would go below).
pub fn scale_factor(width: u32, height: u32, min_short_side: u32) -> u32 {
    let short = width.min(height);
    FACTORS
        .iter()
        .copied()
        .filter(|&f| short.div_ceil(f) >= min_short_side.max(1))
        .max()
        .unwrap_or(1)
}

/// How a pipeline wants its images decoded ([`crate::inference::Pipeline::decode_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodePlan {
    /// A large JPEG at the DCT scale that keeps this short side
    /// ([`decode_image_scaled`]); `u32::MAX` = always full size.
    Scaled { min_short_side: u32 },
    /// Full size, JPEG through libjpeg-turbo as OpenCV decodes it
    /// ([`decode_image_like_opencv`]).
    LikeOpenCv,
}

impl DecodePlan {
    /// Decodes `bytes` by this plan, turned as a JPEG's EXIF orientation says (as the
    /// original's `cv2.imread` turns them, on either plan).
    pub fn decode(self, bytes: &[u8]) -> Result<Decoded, image::ImageError> {
        let decoded = match self {
            DecodePlan::Scaled { min_short_side } => decode_image_scaled(bytes, min_short_side),
            DecodePlan::LikeOpenCv => decode_image_like_opencv(bytes),
        }?;
        Ok(match libjpeg::exif_orientation(bytes) {
            Some(turn) => decoded.oriented(turn),
            None => decoded,
        })
    }
}

/// Decodes jpg/png bytes (format sniffed from the content) at full size, with size
/// limits.
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage, image::ImageError> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    reader.limits(limits);
    reader.decode()
}

/// Decodes like [`decode_image`], but a JPEG whose short side is at least twice
/// `min_short_side` is decoded at the smallest DCT scale that keeps its short side
/// `>= min_short_side` ([`scale_factor`]). `u32::MAX` never scales.
pub fn decode_image_scaled(
    bytes: &[u8],
    min_short_side: u32,
) -> Result<Decoded, image::ImageError> {
    if let Some(d) = decode_jpeg_scaled(bytes, min_short_side) {
        return Ok(d);
    }
    decode_image(bytes).map(Decoded::full)
}

/// Decodes at full size; a JPEG through libjpeg-turbo as OpenCV does (module doc),
/// anything else, or a CMYK/YCCK JPEG, through [`decode_image`].
pub fn decode_image_like_opencv(bytes: &[u8]) -> Result<Decoded, image::ImageError> {
    if bytes.starts_with(&JPEG_SIGNATURE) {
        match libjpeg::decode_like_opencv(bytes, MAX_IMAGE_SIDE) {
            Ok(image) => return Ok(Decoded::full(image)),
            Err(LibjpegError::ColourModel(_)) => {}
            Err(e) => {
                return Err(image::ImageError::Decoding(DecodingError::new(
                    ImageFormatHint::Exact(ImageFormat::Jpeg),
                    e,
                )))
            }
        }
    }
    decode_image(bytes).map(Decoded::full)
}

/// The scaled JPEG path; `None` = use the full-size path.
fn decode_jpeg_scaled(bytes: &[u8], min_short_side: u32) -> Option<Decoded> {
    let (width, height) = libjpeg::dimensions(bytes)?;
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return None;
    }
    let factor = scale_factor(width, height, min_short_side);
    if factor == 1 {
        return None;
    }
    let image = libjpeg::decode_scaled(bytes, MAX_IMAGE_SIDE, factor).ok()?;
    Some(Decoded {
        image,
        scale: DecodeScale {
            factor,
            source_width: width,
            source_height: height,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, RgbImage};

    #[test]
    fn factor_keeps_the_short_side() {
        // The line photo with the line models' minimum (320; 374 with a 224 px
        // classifier): 1536 / 4 = 384.
        assert_eq!(scale_factor(2048, 1536, 320), 4);
        assert_eq!(scale_factor(2048, 1536, 374), 4);
        // 448 (box of half the short side): 1/2 only.
        assert_eq!(scale_factor(2048, 1536, 448), 2);
        assert_eq!(scale_factor(2048, 1536, 192), 8);
        assert_eq!(scale_factor(480, 360, 374), 1);
        assert_eq!(scale_factor(480, 360, 180), 2);
        // Rounding up: ceil(1535 / 4) = 384.
        assert_eq!(scale_factor(1535, 2048, 384), 4);
        assert_eq!(scale_factor(2048, 1536, u32::MAX), 1);
        assert_eq!(scale_factor(0, 0, 10), 1);
    }

    #[test]
    fn boxes_map_back_to_source_pixels() {
        let s = DecodeScale {
            factor: 4,
            source_width: 2047,
            source_height: 1536,
        };
        assert_eq!(
            s.box_to_source([10.5, 20.0, 512.0, 384.0]),
            [42.0, 80.0, 2047.0, 1536.0]
        );
        let full = DecodeScale::full(640, 480);
        let b = [1.25, 2.5, 639.75, 479.0];
        assert_eq!(full.box_to_source(b), b);
    }

    #[test]
    fn rects_map_onto_decoded_pixels() {
        let s = DecodeScale {
            factor: 4,
            source_width: 2047,
            source_height: 1536,
        };
        let r = Rect::from_corners([401, 8, 1203, 1536]);
        assert_eq!(s.rect_to_window(r), [100.25, 2.0, 300.75, 384.0]);
        let full = DecodeScale::full(640, 480);
        let r = Rect::from_corners([3, 4, 600, 401]);
        assert_eq!(full.rect_to_window(r), [3.0, 4.0, 600.0, 401.0]);
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .expect("encode");
        out
    }

    /// `bytes` with an APP1 EXIF segment (big-endian TIFF, one IFD entry: orientation
    /// `exif`) right after the start-of-image marker, as cameras write it.
    fn with_exif_orientation(bytes: &[u8], exif: u16) -> Vec<u8> {
        let mut tiff = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]); // tag, SHORT, count 1
        tiff.extend_from_slice(&exif.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // pad, next IFD = none
        let mut out = bytes[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&u16::try_from(tiff.len() + 2).expect("small").to_be_bytes());
        out.extend_from_slice(&tiff);
        out.extend_from_slice(&bytes[2..]);
        out
    }

    #[test]
    fn exif_orientation_turns_the_photo_on_both_plans() {
        let plain = jpeg(803, 602);
        assert_eq!(libjpeg::exif_orientation(&plain), None);
        // 6 = turn 90° clockwise to show it upright (a camera held on its side).
        let tagged = with_exif_orientation(&plain, 6);
        assert_eq!(
            libjpeg::exif_orientation(&tagged),
            Some(Orientation::Rotate90)
        );
        for plan in [
            DecodePlan::LikeOpenCv,
            DecodePlan::Scaled {
                min_short_side: 150,
            },
        ] {
            let upright = plan.decode(&plain).expect("plain");
            let turned = plan.decode(&tagged).expect("tagged");
            let (w, h) = (upright.image.width(), upright.image.height());
            assert_eq!(
                (turned.image.width(), turned.image.height()),
                (h, w),
                "{plan:?}"
            );
            assert_eq!(
                (turned.scale.source_width, turned.scale.source_height),
                (602, 803),
                "{plan:?}"
            );
            assert_eq!(turned.scale.factor, upright.scale.factor);
            // Same pixels, turned: the tag changes nothing else.
            let expect = image::imageops::rotate90(&upright.image.to_rgb8());
            assert!(turned.image.to_rgb8() == expect, "{plan:?}");
        }
        // 1 = as stored; an unknown value or a cut segment = no turn, still decoded.
        assert_eq!(
            libjpeg::exif_orientation(&with_exif_orientation(&plain, 1)),
            Some(Orientation::NoTransforms)
        );
        assert_eq!(
            libjpeg::exif_orientation(&with_exif_orientation(&plain, 9)),
            None
        );
        let cut = with_exif_orientation(&plain, 6);
        assert_eq!(libjpeg::exif_orientation(&cut[..20]), None);
    }

    #[test]
    fn large_jpeg_is_decoded_scaled() {
        let bytes = jpeg(803, 602);
        let d = decode_image_scaled(&bytes, 150).expect("decode");
        assert_eq!(d.scale.factor, 4);
        assert_eq!((d.scale.source_width, d.scale.source_height), (803, 602));
        assert_eq!((d.image.width(), d.image.height()), (201, 151));
        assert!(d.image.as_rgb8().is_some());
        // Same colours as the full decode, averaged over 4×4 blocks.
        let full = decode_image(&bytes).expect("full").to_rgb8();
        let small = d.image.to_rgb8();
        let (x, y) = (100u32, 75u32);
        for c in 0..3 {
            let mut sum = 0u32;
            for dy in 0..4 {
                for dx in 0..4 {
                    sum += u32::from(full.get_pixel(4 * x + dx, 4 * y + dy)[c]);
                }
            }
            let mean = sum as i32 / 16;
            let got = i32::from(small.get_pixel(x, y)[c]);
            assert!((mean - got).abs() <= 8, "channel {c}: {mean} vs {got}");
        }
    }

    #[test]
    fn like_opencv_is_full_size_and_close_to_the_full_path() {
        let bytes = jpeg(803, 601);
        let d = DecodePlan::LikeOpenCv.decode(&bytes).expect("decode");
        assert_eq!(d.scale, DecodeScale::full(803, 601));
        let ours = d.image.to_rgb8();
        let full = decode_image(&bytes).expect("full").to_rgb8();
        let worst = ours
            .as_raw()
            .iter()
            .zip(full.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max();
        // Two decoders of the same file: a few levels apart at most, not the same code.
        assert!(worst.is_some_and(|w| w <= 8), "{worst:?}");

        let mut png = Vec::new();
        DynamicImage::ImageRgb8(RgbImage::from_pixel(80, 60, image::Rgb([1, 2, 3])))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        let d = DecodePlan::LikeOpenCv.decode(&png).expect("png decode");
        assert_eq!(
            d.image.to_rgb8(),
            decode_image(&png).expect("png").to_rgb8()
        );

        // A truncated JPEG is an error here (libjpeg would fill the rest with grey).
        let cut = &bytes[..bytes.len() / 3];
        let err = DecodePlan::LikeOpenCv.decode(cut).map(drop);
        assert!(
            err.as_ref()
                .is_err_and(|e| e.to_string().contains("truncated JPEG")),
            "{err:?}"
        );
        assert!(DecodePlan::LikeOpenCv
            .decode(b"\xFF\xD8\xFFnot a jpeg")
            .is_err());
    }

    #[test]
    fn small_jpeg_png_and_garbage_take_the_full_path() {
        let bytes = jpeg(64, 48);
        let d = decode_image_scaled(&bytes, 40).expect("decode");
        assert_eq!(d.scale, DecodeScale::full(64, 48));
        assert_eq!((d.image.width(), d.image.height()), (64, 48));

        let mut png = Vec::new();
        DynamicImage::ImageRgb8(RgbImage::new(800, 600))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        let d = decode_image_scaled(&png, 100).expect("png decode");
        assert_eq!(d.scale, DecodeScale::full(800, 600));

        // A truncated JPEG: the full path's error.
        let bytes = jpeg(800, 600);
        let cut = &bytes[..bytes.len() / 3];
        let full_err = decode_image(cut).map(drop);
        let scaled_err = decode_image_scaled(cut, 100).map(drop);
        assert_eq!(full_err.is_err(), scaled_err.is_err());
        assert!(decode_image_scaled(b"\xFF\xD8\xFFnot a jpeg", 100).is_err());
        assert!(decode_image_scaled(b"", 100).is_err());
    }

    #[test]
    fn grey_jpeg_is_scaled_too() {
        let img = GrayImage::from_fn(640, 480, |x, _| image::Luma([(x % 256) as u8]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut out)
            .encode_image(&img)
            .expect("encode");
        let d = decode_image_scaled(&out, 200).expect("decode");
        assert_eq!(d.scale.factor, 2);
        assert_eq!((d.image.width(), d.image.height()), (320, 240));
        assert!(d.image.as_luma8().is_some());
    }
}
