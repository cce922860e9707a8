//! QR codes: render member codes for screens and print, and read them back from images.

use image::{GrayImage, ImageReader, Luma};
use qrcode::{EcLevel, QrCode};
use thiserror::Error;

/// Why a QR code could not be made or read.
#[derive(Debug, Error)]
pub enum QrError {
    #[error("cannot make a QR code: {0}")]
    Encode(qrcode::types::QrError),
    #[error("cannot read image {path}: {reason}")]
    Image { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("no QR code found in the image")]
    NotFound,
}

impl From<qrcode::types::QrError> for QrError {
    fn from(e: qrcode::types::QrError) -> Self {
        Self::Encode(e)
    }
}

/// Modules of blank margin around the symbol: the 4 the QR standard asks for, which cheap
/// scanners and phone cameras need to find the finder patterns.
pub const QUIET_ZONE: u32 = 4;

/// Renders `text` as a black-on-white QR code with error correction level M (survives ~15%
/// damage: glare on a phone screen, a scuffed card) and a quiet zone, `module_px` pixels per
/// module.
pub fn render(text: &str, module_px: u32) -> Result<GrayImage, QrError> {
    render_at(text, EcLevel::M, module_px)
}

/// Renders a long link (a wallet save URL) at error correction level L, which holds the most
/// text; links are shown on a clean screen, not printed on a scuffed card.
pub fn render_link(text: &str, module_px: u32) -> Result<GrayImage, QrError> {
    render_at(text, EcLevel::L, module_px)
}

fn render_at(text: &str, level: EcLevel, module_px: u32) -> Result<GrayImage, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), level)?;
    let size = code.width() as u32;
    let px = module_px.max(1);
    let side = (size + 2 * QUIET_ZONE) * px;
    let mut img = GrayImage::from_pixel(side, side, Luma([255]));
    for (i, colour) in code.to_colors().into_iter().enumerate() {
        if colour != qrcode::Color::Dark {
            continue;
        }
        let (x, y) = ((i as u32) % size, (i as u32) / size);
        for dy in 0..px {
            for dx in 0..px {
                img.put_pixel(
                    (x + QUIET_ZONE) * px + dx,
                    (y + QUIET_ZONE) * px + dy,
                    Luma([0]),
                );
            }
        }
    }
    Ok(img)
}

/// Writes `text` as a QR code PNG at `path` (10 px per module: crisp when printed).
pub fn write_png(text: &str, path: &std::path::Path) -> Result<(), QrError> {
    let img = render(text, 10)?;
    let write_err = |reason: String| QrError::Write {
        path: path.display().to_string(),
        reason,
    };
    // Write beside the target and rename, so a failure never leaves half a PNG.
    let tmp = path.with_extension("png.partial");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| write_err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_err(e.to_string())
    })
}

/// Reads every QR code in an image file (PNG or JPEG).
pub fn decode_file(path: &std::path::Path) -> Result<Vec<String>, QrError> {
    let img_err = |reason: String| QrError::Image {
        path: path.display().to_string(),
        reason,
    };
    let img = ImageReader::open(path)
        .map_err(|e| img_err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| img_err(e.to_string()))?
        .decode()
        .map_err(|e| img_err(e.to_string()))?;
    decode(&img.to_luma8())
}

/// Reads every QR code in a greyscale image (a file or a camera frame). Tries the image as it
/// is, then contrast-stretched, smoothed and rescaled variants, which recover low-contrast,
/// noisy, blurred and very large or small captures.
pub fn decode(img: &GrayImage) -> Result<Vec<String>, QrError> {
    let attempts: [fn(&GrayImage) -> Option<GrayImage>; 5] = [
        |_| None,
        |i| Some(stretch_contrast(i)),
        |i| Some(stretch_contrast(&image::imageops::blur(i, 1.5))),
        |i| rescale(i, 0.5),
        |i| rescale(i, 2.0),
    ];
    for attempt in attempts {
        let variant = attempt(img);
        let found = decode_once(variant.as_ref().unwrap_or(img));
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Err(QrError::NotFound)
}

fn decode_once(img: &GrayImage) -> Vec<String> {
    let mut prepared = rqrr::PreparedImage::prepare(img.clone());
    prepared
        .detect_grids()
        .into_iter()
        .filter_map(|grid| grid.decode().ok().map(|(_, text)| text))
        .collect()
}

/// Maps the darkest 1% to black and the brightest 1% to white.
fn stretch_contrast(img: &GrayImage) -> GrayImage {
    let mut histogram = [0u64; 256];
    for p in img.pixels() {
        histogram[usize::from(p.0[0])] += 1;
    }
    let total: u64 = histogram.iter().sum();
    let cut = total / 100;
    let mut acc = 0;
    let lo = histogram
        .iter()
        .position(|&n| {
            acc += n;
            acc > cut
        })
        .unwrap_or(0);
    acc = 0;
    let hi = 255
        - histogram
            .iter()
            .rev()
            .position(|&n| {
                acc += n;
                acc > cut
            })
            .unwrap_or(0);
    if hi <= lo + 1 {
        return img.clone();
    }
    let span = (hi - lo) as f32;
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let v = (f32::from(p.0[0]) - lo as f32) / span * 255.0;
        p.0[0] = v.clamp(0.0, 255.0) as u8;
    }
    out
}

fn rescale(img: &GrayImage, factor: f32) -> Option<GrayImage> {
    let w = (img.width() as f32 * factor) as u32;
    let h = (img.height() as f32 * factor) as u32;
    (w >= 21 && h >= 21 && w <= 8000 && h <= 8000)
        .then(|| image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_decodes() {
        let text = "TP1.1234567897.ABCDEFGHIJKLMNOP";
        let img = render(text, 4).expect("render");
        assert_eq!(decode(&img).expect("decode"), vec![text.to_owned()]);
    }

    #[test]
    fn blank_image_has_no_code() {
        let img = GrayImage::from_pixel(200, 200, Luma([255]));
        assert!(matches!(decode(&img), Err(QrError::NotFound)));
    }
}
