//! A member as the screens show them: the worker's panel with its QR code as a texture.

use egui::TextureHandle;

use super::worker::MemberPanel;
use crate::domain::Entry;
use crate::store::MemberView;

/// A member on screen.
pub struct ShownMember {
    /// The member with balance and tier as of when they were loaded.
    pub view: MemberView,
    pub history: Vec<Entry>,
    /// The signed member code in their QR code.
    pub code: String,
    pub qr: TextureHandle,
    /// Stamps held, by stamp card id.
    pub stamps: std::collections::BTreeMap<String, i64>,
    /// Points earned within the return window, not spendable yet.
    pub pending: i64,
    /// Offers open now, and progress towards the others.
    pub offers: crate::store::MemberOffers,
    /// Badges held (ids).
    pub badges: Vec<String>,
    /// When the paid tier lapses, if it is in force.
    pub paid_until: Option<crate::domain::Timestamp>,
    /// Who referred them, and their referrals rewarded this year.
    pub referrals: crate::store::MemberReferrals,
    /// Their last transaction at this till: what "Reverse last" undoes.
    pub last_here: Option<Entry>,
    /// The server's balance, asked for while this till is still receiving the chain's
    /// history (its own count lacks the entries it has not pulled yet).
    pub server: Option<ServerBalance>,
}

/// The server's word on a member's balance while this till catches up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerBalance {
    Asking,
    /// The server's balance is the one shown (and spent from); `here` is this till's count.
    Shown {
        here: i64,
    },
    /// The server could not be asked in time.
    Unanswered,
}

impl ShownMember {
    /// The names of the member's badges, in the order they were awarded.
    pub fn badge_names(&self, program: &crate::domain::Program) -> Vec<String> {
        self.badges
            .iter()
            .map(|id| program.badge(id).map_or(id.clone(), |b| b.name.clone()))
            .collect()
    }

    /// The member's state with the balance they may spend now (pending points held back).
    pub fn spendable(&self) -> crate::domain::MemberSummary {
        crate::domain::MemberSummary {
            balance: crate::domain::summary::available(&self.view.state, self.pending),
            ..self.view.state
        }
    }

    /// Shows (and prices rewards against) the server's balance in place of this till's count.
    pub fn take_server_balance(&mut self, balance: i64) {
        let here = match self.server {
            Some(ServerBalance::Shown { here }) => here,
            _ => self.view.state.balance,
        };
        self.server = Some(ServerBalance::Shown { here });
        self.view.state.balance = balance;
    }

    /// The server's balance is shown and this till's own count differs: its history of the
    /// member is not all here yet, so its tier and progress may be behind too.
    pub fn history_behind(&self) -> Option<i64> {
        match self.server {
            Some(ServerBalance::Shown { here }) if here != self.view.state.balance => Some(here),
            _ => None,
        }
    }

    /// Uploads the panel's QR code as the texture `name`.
    pub fn new(ctx: &egui::Context, name: &str, panel: MemberPanel) -> Self {
        Self {
            qr: texture(ctx, name, &panel.qr),
            view: panel.view,
            history: panel.history,
            code: panel.code,
            stamps: panel.stamps,
            pending: panel.pending,
            offers: panel.offers,
            badges: panel.badges,
            paid_until: panel.paid_until,
            referrals: panel.referrals,
            last_here: panel.last_here,
            server: None,
        }
    }
}

/// A grey image as a texture drawn with sharp pixels (QR codes).
pub fn texture(ctx: &egui::Context, name: &str, img: &image::GrayImage) -> TextureHandle {
    let size = [img.width() as usize, img.height() as usize];
    let colour = egui::ColorImage::from_gray(size, img.as_raw());
    ctx.load_texture(name, colour, egui::TextureOptions::NEAREST)
}
