//! Fallback fonts from the operating system, for members' names the built-in fonts cannot
//! draw (Chinese, Japanese and Korean, Arabic, Hebrew, ...): read on a thread of their own at
//! start-up, each added behind the built-in fonts once read.

use egui::epaint::text::{FontInsert, FontPriority, InsertFontFamily};
use egui::{FontData, FontFamily};

/// Where common systems keep fonts with wide coverage; those present are used, in this order.
const FALLBACKS: &[&str] = &[
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansHebrew-Regular.ttf",
    "C:\\Windows\\Fonts\\msyh.ttc",
    "C:\\Windows\\Fonts\\segoeui.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
];

/// Starts reading the fallback fonts; the window repaints with each one added.
pub fn load_fallbacks(ctx: &egui::Context) {
    let ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name("fonts".into())
        .spawn(move || {
            for path in FALLBACKS {
                if let Ok(bytes) = std::fs::read(path) {
                    let families = [FontFamily::Proportional, FontFamily::Monospace]
                        .into_iter()
                        .map(|family| InsertFontFamily {
                            family,
                            priority: FontPriority::Lowest,
                        })
                        .collect();
                    ctx.add_font(FontInsert::new(path, FontData::from_owned(bytes), families));
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("tillpass: fallback fonts not loaded: {e}");
    }
}
