//! PC/SC contactless readers (feature `pcsc`): wait for a tag, read its UID and its NDEF data area.
//! Needs the PC/SC daemon (`pcscd`) and, to build, `libpcsclite-dev`.

use std::ffi::CString;
use std::time::Duration;

use thiserror::Error;

use super::apdu::{self, ApduError};

/// What a tap on the reader gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRead {
    /// UID in upper-case hex, as keyboard-mode readers type it.
    pub uid: String,
    /// The Type 2 data area from page 4, when the tag has one.
    pub memory: Option<Vec<u8>>,
}

/// Why no tag could be read.
#[derive(Debug, Error)]
pub enum ReaderError {
    #[error("PC/SC is not available (is pcscd running?): {0}")]
    Service(pcsc::Error),
    #[error("no PC/SC reader is connected")]
    NoReader,
    #[error("no tag was presented in time")]
    Timeout,
    #[error("the reader failed: {0}")]
    Reader(pcsc::Error),
    #[error(transparent)]
    Apdu(#[from] ApduError),
}

/// A connection to the first PC/SC reader.
pub struct Reader {
    ctx: pcsc::Context,
    name: CString,
}

impl Reader {
    /// Connects to the PC/SC service and picks the first reader.
    pub fn first() -> Result<Self, ReaderError> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(ReaderError::Service)?;
        let readers = ctx.list_readers_owned().map_err(ReaderError::Service)?;
        let name = readers.into_iter().next().ok_or(ReaderError::NoReader)?;
        Ok(Self { ctx, name })
    }

    /// The reader's name.
    pub fn name(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }

    /// Waits until the tag is taken away, so one tap is read once.
    pub fn wait_removed(&self) -> Result<(), ReaderError> {
        self.wait_for(pcsc::State::EMPTY, Duration::from_secs(3600))
    }

    fn wait_for(&self, wanted: pcsc::State, timeout: Duration) -> Result<(), ReaderError> {
        let mut states = [pcsc::ReaderState::new(
            self.name.clone(),
            pcsc::State::UNAWARE,
        )];
        loop {
            match self.ctx.get_status_change(timeout, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => return Err(ReaderError::Timeout),
                Err(e) => return Err(ReaderError::Reader(e)),
            }
            if states[0].event_state().contains(wanted) {
                return Ok(());
            }
            states[0].sync_current_state();
        }
    }

    /// Waits up to `timeout` for a tag, then reads it.
    pub fn read_tag(&self, timeout: Duration) -> Result<TagRead, ReaderError> {
        self.wait_for(pcsc::State::PRESENT, timeout)?;
        let card = self
            .ctx
            .connect(&self.name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
            .map_err(ReaderError::Reader)?;
        let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE];
        let uid = apdu::hex(apdu::response_data(
            card.transmit(&apdu::GET_UID, &mut buffer)
                .map_err(ReaderError::Reader)?,
        )?);
        let mut memory = Vec::new();
        let mut page = u16::from(apdu::FIRST_DATA_PAGE);
        while page < apdu::MAX_PAGES && !apdu::tlv_complete(&memory) {
            let command = apdu::read_binary(u8::try_from(page).unwrap_or(u8::MAX));
            let Ok(response) = card.transmit(&command, &mut buffer) else {
                break;
            };
            let Ok(data) = apdu::response_data(response) else {
                break;
            };
            memory.extend_from_slice(data);
            page += 4;
        }
        let memory = apdu::tlv_complete(&memory).then_some(memory);
        Ok(TagRead { uid, memory })
    }
}
