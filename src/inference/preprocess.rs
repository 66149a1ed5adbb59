//! Preprocessing: image → normalised CHW float tensors, and the letterbox geometry.
//!
//! Resizing is one fused pass per image: an antialiased bilinear (triangle) filter
//! computed the way Pillow's `Image.resize(..., BILINEAR)` computes its coefficients
//! (the filter widens when downscaling), applied separably in `f32` with no 8-bit
//! rounding in between, and written straight into the model's CHW buffer with the
//! normalisation folded in. `tools/parity/make_reference.py` mirrors it with numpy
//! matrices, which is what lets the parity test hold to 1e-3.
//! `benches/pipeline.rs` compares it with `image::imageops::resize` (Triangle) followed
//! by a normalise pass; see `src/inference/README.md` for the numbers.

use image::RgbImage;

/// Grey used by ultralytics for letterbox padding (114/255 after scaling).
pub const LETTERBOX_PAD: f32 = 114.0 / 255.0;
/// ImageNet statistics, the default for classifiers without `mean`/`std` metadata.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `out = pixel * scale + bias` per channel, pixel in 0..=255.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    pub scale: [f32; 3],
    pub bias: [f32; 3],
}

impl Normalize {
    /// Plain 0..1 scaling (YOLO input).
    pub fn unit() -> Normalize {
        Normalize {
            scale: [1.0 / 255.0; 3],
            bias: [0.0; 3],
        }
    }
    /// `(pixel / 255 - mean) / std`.
    pub fn mean_std(mean: [f32; 3], std: [f32; 3]) -> Normalize {
        let mut n = Normalize {
            scale: [0.0; 3],
            bias: [0.0; 3],
        };
        for c in 0..3 {
            n.scale[c] = 1.0 / (255.0 * std[c]);
            n.bias[c] = -mean[c] / std[c];
        }
        n
    }
}

/// A pixel rectangle of a source image: x, y, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub fn whole(img: &RgbImage) -> Rect {
        Rect {
            x: 0,
            y: 0,
            w: img.width(),
            h: img.height(),
        }
    }
    /// The rectangle widened by `margin` × its width/height on each side, clamped to a
    /// `img_w` × `img_h` image: `x1 - m·w` rounded down, `x2 + m·w` rounded up.
    pub fn widened(self, margin: f32, img_w: u32, img_h: u32) -> Rect {
        if margin <= 0.0 || !margin.is_finite() {
            return self;
        }
        let (mx, my) = (margin * self.w as f32, margin * self.h as f32);
        let x1 = (self.x as f32 - mx).floor().max(0.0) as u32;
        let y1 = (self.y as f32 - my).floor().max(0.0) as u32;
        let x2 = ((self.x + self.w) as f32 + mx).ceil().min(img_w as f32) as u32;
        let y2 = ((self.y + self.h) as f32 + my).ceil().min(img_h as f32) as u32;
        Rect::from_corners([x1, y1, x2.max(x1 + 1), y2.max(y1 + 1)])
    }
    /// From `[x1, y1, x2, y2]` (exclusive right/bottom edges).
    pub fn from_corners(b: [u32; 4]) -> Rect {
        Rect {
            x: b[0],
            y: b[1],
            w: b[2].saturating_sub(b[0]),
            h: b[3].saturating_sub(b[1]),
        }
    }
}

/// Where a letterboxed image sits inside the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Source pixels → input pixels.
    pub scale: f64,
    pub left: u32,
    pub top: u32,
    pub new_w: u32,
    pub new_h: u32,
    pub dst_w: u32,
    pub dst_h: u32,
}

impl Letterbox {
    /// The ultralytics `LetterBox(auto=False, center=True)` geometry: scale to fit,
    /// keep the aspect ratio, centre, pad. Python's `round` (ties to even) is mirrored.
    pub fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Letterbox {
        let (sw, sh) = (f64::from(src_w.max(1)), f64::from(src_h.max(1)));
        let scale = (f64::from(dst_h) / sh).min(f64::from(dst_w) / sw);
        let new_w = ((sw * scale).round_ties_even() as u32).clamp(1, dst_w.max(1));
        let new_h = ((sh * scale).round_ties_even() as u32).clamp(1, dst_h.max(1));
        let dw = f64::from(dst_w - new_w) / 2.0;
        let dh = f64::from(dst_h - new_h) / 2.0;
        let left = (dw - 0.1).round_ties_even().max(0.0) as u32;
        let top = (dh - 0.1).round_ties_even().max(0.0) as u32;
        Letterbox {
            scale,
            left,
            top,
            new_w,
            new_h,
            dst_w,
            dst_h,
        }
    }

    /// Maps a box `[x1, y1, x2, y2]` in input pixels back to source pixels, clamped to
    /// the source image.
    pub fn to_source(&self, b: [f32; 4], src_w: u32, src_h: u32) -> [f32; 4] {
        let fx = |v: f32| {
            ((f64::from(v) - f64::from(self.left)) / self.scale).clamp(0.0, f64::from(src_w)) as f32
        };
        let fy = |v: f32| {
            ((f64::from(v) - f64::from(self.top)) / self.scale).clamp(0.0, f64::from(src_h)) as f32
        };
        [fx(b[0]), fy(b[1]), fx(b[2]), fy(b[3])]
    }
}

/// Rounds a float box outwards to whole source pixels, `[x1, y1, x2, y2]` with exclusive
/// right/bottom edges, at least one pixel wide and high, inside the image.
pub fn pixel_box(b: [f32; 4], src_w: u32, src_h: u32) -> [u32; 4] {
    let clamp = |v: f32, hi: u32| {
        if v.is_finite() {
            v.clamp(0.0, hi as f32)
        } else {
            0.0
        }
    };
    let mut x1 = clamp(b[0], src_w).floor() as u32;
    let mut y1 = clamp(b[1], src_h).floor() as u32;
    let mut x2 = clamp(b[2], src_w).ceil() as u32;
    let mut y2 = clamp(b[3], src_h).ceil() as u32;
    if x2 <= x1 {
        x1 = x1.min(src_w.saturating_sub(1));
        x2 = x1 + 1;
    }
    if y2 <= y1 {
        y1 = y1.min(src_h.saturating_sub(1));
        y2 = y1 + 1;
    }
    [x1, y1, x2.min(src_w.max(1)), y2.min(src_h.max(1))]
}

/// Resampling coefficients for one axis (Pillow's `precompute_coeffs`, bilinear).
#[derive(Debug, Clone)]
pub struct Coeffs {
    /// First source index for each output index.
    pub start: Vec<usize>,
    /// Number of taps for each output index.
    pub len: Vec<usize>,
    /// Weights, `taps` per output index (zero-padded).
    pub weights: Vec<f32>,
    pub taps: usize,
}

impl Coeffs {
    pub fn new(in_size: usize, out_size: usize) -> Coeffs {
        Coeffs::window(in_size, 0.0, in_size as f64, out_size)
    }

    /// Coefficients for resampling the window `in0..in1` (fractional input pixels) of
    /// an axis of `in_size` pixels to `out_size` pixels: Pillow's `box` argument.
    /// Taps stay inside `0..in_size`. `window(n, 0, n, m)` is `new(n, m)`.
    pub fn window(in_size: usize, in0: f64, in1: f64, out_size: usize) -> Coeffs {
        let scale = (in1 - in0) / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // bilinear support is 1.0
        let taps = (support.ceil() as usize) * 2 + 1;
        let mut c = Coeffs {
            start: Vec::with_capacity(out_size),
            len: Vec::with_capacity(out_size),
            weights: vec![0.0; out_size * taps],
            taps,
        };
        let mut w = vec![0f64; taps];
        for i in 0..out_size {
            let center = in0 + (i as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64)
                .min(in_size as i64)
                .max(xmin as i64) as usize;
            let n = (xmax - xmin).min(taps);
            let mut total = 0.0;
            for (j, wj) in w.iter_mut().enumerate().take(n) {
                let x = ((j + xmin) as f64 - center + 0.5) / filterscale;
                *wj = (1.0 - x.abs()).max(0.0);
                total += *wj;
            }
            let row = &mut c.weights[i * taps..i * taps + n];
            for (dst, wj) in row.iter_mut().zip(w.iter()) {
                *dst = if total > 0.0 {
                    (*wj / total) as f32
                } else {
                    0.0
                };
            }
            c.start.push(xmin);
            c.len.push(n);
        }
        c
    }
}

/// A destination: one image slot of a `[B, 3, H, W]` tensor (length `3 * H * W`).
pub struct ChwTarget<'a> {
    pub data: &'a mut [f32],
    pub width: usize,
    pub height: usize,
}

/// A crop with fractional edges, `[x1, y1, x2, y2]` in image pixels (exclusive
/// right/bottom): a box of source pixels seen in an image decoded at a reduced scale.
pub type Window = [f64; 4];

/// The window covering exactly `r`.
pub fn rect_window(r: Rect) -> Window {
    [
        f64::from(r.x),
        f64::from(r.y),
        f64::from(r.x) + f64::from(r.w),
        f64::from(r.y) + f64::from(r.h),
    ]
}

/// Resizes `region` of `src` to `out_w` x `out_h`, normalises it, and writes it at
/// (`off_x`, `off_y`) of every channel plane of `dst`. Pixels of `dst` outside that
/// rectangle are left untouched (the caller pre-fills letterbox padding).
#[allow(clippy::too_many_arguments)]
pub fn resize_normalize_into(
    src: &RgbImage,
    region: Rect,
    out_w: usize,
    out_h: usize,
    norm: &Normalize,
    dst: &mut ChwTarget<'_>,
    off_x: usize,
    off_y: usize,
) {
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let rx = (region.x as usize).min(sw.saturating_sub(1));
    let ry = (region.y as usize).min(sh.saturating_sub(1));
    let rw = (region.w as usize).clamp(1, sw.saturating_sub(rx).max(1));
    let rh = (region.h as usize).clamp(1, sh.saturating_sub(ry).max(1));
    let window = [0.0, 0.0, rw as f64, rh as f64];
    resize_window_into(
        src,
        [rx, ry, rw, rh],
        window,
        out_w,
        out_h,
        norm,
        dst,
        off_x,
        off_y,
    );
}

/// [`resize_normalize_into`] for a window with fractional edges: only the pixels the
/// window touches are read (as if the image were cropped to them first), and the
/// resampling grid follows the fractional edges.
#[allow(clippy::too_many_arguments)]
pub fn resize_normalize_window_into(
    src: &RgbImage,
    window: Window,
    out_w: usize,
    out_h: usize,
    norm: &Normalize,
    dst: &mut ChwTarget<'_>,
    off_x: usize,
    off_y: usize,
) {
    let (sw, sh) = (f64::from(src.width()), f64::from(src.height()));
    let fix = |v: f64, hi: f64| if v.is_finite() { v.clamp(0.0, hi) } else { 0.0 };
    let (x1, y1) = (fix(window[0], sw), fix(window[1], sh));
    let (x2, y2) = (fix(window[2], sw).max(x1), fix(window[3], sh).max(y1));
    let rx = (x1.floor() as usize).min((sw as usize).saturating_sub(1));
    let ry = (y1.floor() as usize).min((sh as usize).saturating_sub(1));
    let rw = ((x2.ceil() as usize).saturating_sub(rx)).max(1);
    let rh = ((y2.ceil() as usize).saturating_sub(ry)).max(1);
    // An empty window: the one pixel at its corner.
    let (wx2, wy2) = if x2 > x1 { (x2, y2) } else { (x1 + 1.0, y2) };
    let wy2 = if wy2 > y1 { wy2 } else { y1 + 1.0 };
    let local = [
        x1 - rx as f64,
        y1 - ry as f64,
        wx2 - rx as f64,
        wy2 - ry as f64,
    ];
    resize_window_into(
        src,
        [rx, ry, rw, rh],
        local,
        out_w,
        out_h,
        norm,
        dst,
        off_x,
        off_y,
    );
}

/// The shared body: reads the pixels of `rect` (`[x, y, w, h]`, inside `src` when
/// `src` is not empty), resamples `window` (relative to `rect`) to `out_w` x `out_h`.
#[allow(clippy::too_many_arguments)]
fn resize_window_into(
    src: &RgbImage,
    rect: [usize; 4],
    window: Window,
    out_w: usize,
    out_h: usize,
    norm: &Normalize,
    dst: &mut ChwTarget<'_>,
    off_x: usize,
    off_y: usize,
) {
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let [rx, ry, rw, rh] = rect;
    let out_w = out_w.min(dst.width.saturating_sub(off_x));
    let out_h = out_h.min(dst.height.saturating_sub(off_y));
    if out_w == 0 || out_h == 0 || sw == 0 || sh == 0 || rx + rw > sw || ry + rh > sh {
        return;
    }
    let cx = Coeffs::window(rw, window[0], window[2], out_w);
    let cy = Coeffs::window(rh, window[1], window[3], out_h);
    let raw = src.as_raw();
    // Vertical pass first: it runs over whole contiguous rows (vectorises well) and
    // leaves only `out_h` rows for the strided horizontal pass.
    let row_len = rw * 3;
    let mut tmp = vec![0f32; out_h * row_len];
    for (y, acc) in tmp.chunks_exact_mut(row_len).enumerate() {
        let (s, n) = (cy.start[y], cy.len[y]);
        for (k, &w) in cy.weights[y * cy.taps..y * cy.taps + n].iter().enumerate() {
            let start = ((ry + s + k) * sw + rx) * 3;
            for (a, &p) in acc.iter_mut().zip(&raw[start..start + row_len]) {
                *a += f32::from(p) * w;
            }
        }
    }
    // Horizontal pass, normalise, scatter into the CHW planes.
    let plane = dst.width * dst.height;
    for (y, row) in tmp.chunks_exact(row_len).enumerate() {
        let base = (off_y + y) * dst.width + off_x;
        let (r_plane, rest) = dst.data.split_at_mut(plane);
        let (g_plane, b_plane) = rest.split_at_mut(plane);
        let outs = (
            &mut r_plane[base..base + out_w],
            &mut g_plane[base..base + out_w],
            &mut b_plane[base..base + out_w],
        );
        for x in 0..out_w {
            let (s, n) = (cx.start[x], cx.len[x]);
            let ws = &cx.weights[x * cx.taps..x * cx.taps + n];
            let px = &row[s * 3..(s + n) * 3];
            let (mut a, mut b, mut c) = (0f32, 0f32, 0f32);
            for (w, p) in ws.iter().zip(px.chunks_exact(3)) {
                a += p[0] * w;
                b += p[1] * w;
                c += p[2] * w;
            }
            outs.0[x] = a * norm.scale[0] + norm.bias[0];
            outs.1[x] = b * norm.scale[1] + norm.bias[1];
            outs.2[x] = c * norm.scale[2] + norm.bias[2];
        }
    }
}

/// Letterboxes `src` into one `[3, dst_h, dst_w]` slot (RGB 0..1, pad 114/255).
pub fn letterbox_into(src: &RgbImage, dst: &mut ChwTarget<'_>) -> Letterbox {
    let lb = Letterbox::new(
        src.width(),
        src.height(),
        dst.width as u32,
        dst.height as u32,
    );
    dst.data.iter_mut().for_each(|v| *v = LETTERBOX_PAD);
    resize_normalize_into(
        src,
        Rect::whole(src),
        lb.new_w as usize,
        lb.new_h as usize,
        &Normalize::unit(),
        dst,
        lb.left as usize,
        lb.top as usize,
    );
    lb
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return vec![1.0 / logits.len().max(1) as f32; logits.len()];
    }
    let exps: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Index and value of the largest element (first one on ties); `None` when empty.
pub fn argmax(v: &[f32]) -> Option<(usize, f32)> {
    v.iter()
        .copied()
        .enumerate()
        .fold(None, |best, (i, x)| match best {
            Some((_, b)) if b >= x => best,
            _ => Some((i, x)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widened_rect_grows_each_side_and_stays_inside() {
        let r = Rect::from_corners([100, 50, 300, 250]);
        assert_eq!(r.widened(0.0, 640, 480), r);
        // 10 % of 200 = 20 px on each side
        assert_eq!(
            r.widened(0.1, 640, 480),
            Rect::from_corners([80, 30, 320, 270])
        );
        // clamped at the image edges
        assert_eq!(
            r.widened(0.5, 350, 260),
            Rect::from_corners([0, 0, 350, 260])
        );
        assert_eq!(r.widened(f32::NAN, 640, 480), r);
    }

    #[test]
    fn letterbox_landscape() {
        // 640x480 into 320x320: scale 0.5, 320x240, 40 px bars top and bottom.
        let lb = Letterbox::new(640, 480, 320, 320);
        assert_eq!((lb.new_w, lb.new_h, lb.left, lb.top), (320, 240, 0, 40));
        assert!((lb.scale - 0.5).abs() < 1e-12);
        // A box in input pixels maps back to source pixels.
        let b = lb.to_source([100.0, 60.0, 200.0, 140.0], 640, 480);
        assert_eq!(b, [200.0, 40.0, 400.0, 200.0]);
    }

    #[test]
    fn letterbox_portrait_odd_padding() {
        // 100x201 into 320x320: scale 320/201, width round(159.2)=159, pad 161 -> left 80.
        let lb = Letterbox::new(100, 201, 320, 320);
        assert_eq!((lb.new_w, lb.new_h), (159, 320));
        assert_eq!((lb.left, lb.top), (80, 0));
        // Ties go to even like Python: dw = 0.5 -> round(0.4) = 0.
        let lb = Letterbox::new(319, 320, 320, 320);
        assert_eq!((lb.new_w, lb.left), (319, 0));
    }

    #[test]
    fn box_mapping_clamps() {
        let lb = Letterbox::new(640, 480, 320, 320);
        let b = lb.to_source([-50.0, 0.0, 400.0, 400.0], 640, 480);
        assert_eq!(b, [0.0, 0.0, 640.0, 480.0]);
        assert_eq!(
            pixel_box([10.2, 20.7, 30.1, 40.0], 640, 480),
            [10, 20, 31, 40]
        );
        // Degenerate boxes still crop one pixel inside the image.
        assert_eq!(
            pixel_box([640.0, 480.0, 640.0, 480.0], 640, 480),
            [639, 479, 640, 480]
        );
        assert_eq!(pixel_box([f32::NAN, 0.0, 5.0, 5.0], 640, 480), [0, 0, 5, 5]);
    }

    #[test]
    fn coefficients_identity_and_downscale() {
        let c = Coeffs::new(4, 4);
        for i in 0..4 {
            assert_eq!(c.start[i], i);
            assert!((c.weights[i * c.taps] - 1.0).abs() < 1e-6);
        }
        // 4 -> 2: triangle of half-width 2 centred at 1.0 over pixels 0..3 -> 3/7, 3/7, 1/7
        // (checked against Pillow: [0, 0, 70, 0] resized to 2 gives [10, 30]).
        let c = Coeffs::new(4, 2);
        assert_eq!(c.start[0], 0);
        let w = &c.weights[..c.len[0]];
        let sum: f32 = w.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert_eq!(w.len(), 3);
        assert!((w[0] - 3.0 / 7.0).abs() < 1e-6, "{w:?}");
        assert!((w[2] - 1.0 / 7.0).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn letterbox_fills_pad_and_content() {
        let img = RgbImage::from_pixel(40, 20, image::Rgb([255, 0, 51]));
        let mut buf = vec![0f32; 3 * 32 * 32];
        let lb = letterbox_into(
            &img,
            &mut ChwTarget {
                data: &mut buf,
                width: 32,
                height: 32,
            },
        );
        assert_eq!((lb.new_w, lb.new_h, lb.top), (32, 16, 8));
        assert!((buf[0] - LETTERBOX_PAD).abs() < 1e-6); // top-left is padding
        let mid = 16 * 32 + 16;
        assert!((buf[mid] - 1.0).abs() < 1e-5);
        assert!(buf[32 * 32 + mid].abs() < 1e-5);
        assert!((buf[2 * 32 * 32 + mid] - 0.2).abs() < 1e-5);
    }

    #[test]
    fn whole_pixel_windows_resample_like_rects() {
        let img = RgbImage::from_fn(97, 61, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x * y) % 256) as u8,
            ])
        });
        let norm = Normalize::mean_std(IMAGENET_MEAN, IMAGENET_STD);
        let run = |f: &dyn Fn(&mut ChwTarget<'_>)| {
            let mut buf = vec![0f32; 3 * 24 * 24];
            f(&mut ChwTarget {
                data: &mut buf,
                width: 24,
                height: 24,
            });
            buf
        };
        let r = Rect::from_corners([5, 3, 90, 58]);
        let by_rect = run(&|t| resize_normalize_into(&img, r, 24, 24, &norm, t, 0, 0));
        let by_window =
            run(&|t| resize_normalize_window_into(&img, rect_window(r), 24, 24, &norm, t, 0, 0));
        assert_eq!(by_rect, by_window);
        // A fractional window reads only the pixels it touches and stays finite.
        let w = [5.25, 3.5, 89.75, 57.25];
        let frac = run(&|t| resize_normalize_window_into(&img, w, 24, 24, &norm, t, 0, 0));
        assert!(frac.iter().all(|v| v.is_finite()));
        assert_ne!(frac, by_rect);
        let c = Coeffs::window(10, 0.0, 10.0, 4);
        let d = Coeffs::new(10, 4);
        assert_eq!((c.start, c.len, c.weights), (d.start, d.len, d.weights));
    }

    #[test]
    fn softmax_and_argmax() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((p[2] - 0.665_240_9).abs() < 1e-6);
        let p = softmax(&[1000.0, 1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-6);
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), Some((1, 0.7)));
        assert_eq!(argmax(&[]), None);
        assert_eq!(softmax(&[f32::NAN, 1.0]).len(), 2);
    }
}
