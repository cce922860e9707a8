//! Live camera capture (feature `camera`): frames from a camera (V4L2 on Linux) go through the
//! same QR decoder as pictures. Needs libclang to build (V4L2 bindings) and a camera to run.

use std::time::{Duration, Instant};

use nokhwa::Camera;
use nokhwa::pixel_format::LumaFormat;
use nokhwa::utils::{CameraIndex, RequestedFormat, RequestedFormatType};
use thiserror::Error;

use super::qr;

/// Why no code was read from the camera.
#[derive(Debug, Error)]
pub enum CameraError {
    #[error("cannot open camera {index}: {reason}")]
    Open { index: u32, reason: String },
    #[error("the camera stopped delivering frames: {0}")]
    Frame(String),
    #[error("no QR code seen in {0:?}")]
    Timeout(Duration),
}

/// Watches camera `index` for up to `timeout` and returns the first decoded text that `accept`
/// takes (e.g. a member code that verifies); other codes in view are passed over.
pub fn read_code(
    index: u32,
    timeout: Duration,
    mut accept: impl FnMut(&str) -> bool,
) -> Result<String, CameraError> {
    let open_err = |e: nokhwa::NokhwaError| CameraError::Open {
        index,
        reason: e.to_string(),
    };
    let format = RequestedFormat::new::<LumaFormat>(RequestedFormatType::AbsoluteHighestFrameRate);
    let mut camera = Camera::new(CameraIndex::Index(index), format).map_err(open_err)?;
    camera.open_stream().map_err(open_err)?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let frame = camera
            .frame()
            .map_err(|e| CameraError::Frame(e.to_string()))?;
        let gray = frame
            .decode_image::<LumaFormat>()
            .map_err(|e| CameraError::Frame(e.to_string()))?;
        if let Ok(texts) = qr::decode(&gray)
            && let Some(text) = texts.into_iter().find(|t| accept(t))
        {
            camera.stop_stream().ok();
            return Ok(text);
        }
    }
    camera.stop_stream().ok();
    Err(CameraError::Timeout(timeout))
}
