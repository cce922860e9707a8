//! What the user asked for. Screens, bars and dialogs draw and return an [`Action`];
//! [`TillApp::act`](super::TillApp::act) is the one place that applies it.

use std::path::PathBuf;

use crate::domain::{CardNumber, MemberId, MemberInput};

use super::worker::PageKey;

/// Which screen the main window shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Cashier,
    Enrol,
    Manager,
}

/// A user intent.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Go(Screen),
    ToggleCustomerDisplay,
    /// Esc: close the dialog, or clear the member, sale and search.
    Clear,
    /// A line from the scan field (Enter): a scan or search, a sale amount to preview, or an
    /// empty line that confirms the previewed sale.
    Submit(String),
    /// Earn points on the previewed sale.
    Earn,
    /// Redeem the selected reward.
    Redeem,
    /// Spend the member's full stamp card (its id) on its free item.
    RedeemStamps(String),
    /// Sell the program's paid tier to the member on screen.
    BuyMembership,
    /// Use an offer (its id) open for the member on screen.
    UseOffer(String),
    /// Open the "give points to a cause" prompt for the member on screen.
    AskDonate,
    /// The member gives points to a cause.
    Donate {
        member: MemberId,
        cause: String,
        points: i64,
    },
    NextReward,
    PreviousReward,
    /// Reverse the member's last transaction here (asks for the manager PIN).
    ReverseLast,
    /// Show a member picked from search results.
    Open(MemberId),
    /// Show a member picked elsewhere and go to the cashier screen.
    Serve(MemberId),
    WalletPass(MemberId),
    ExportQr {
        card: CardNumber,
        code: String,
    },
    PrintQr {
        card: CardNumber,
        code: String,
    },
    Enrol(MemberInput),
    /// Open the "scan from image" prompt.
    AskImage,
    ScanImage(PathBuf),
    LoadDemo(usize),
    /// Start with an empty store instead of demo data.
    DeclineDemo,
    /// Join the server a join code names.
    Join(String),
    /// Submit the open PIN dialog.
    SubmitPin,
    /// Open the "import members" prompt (manager screen).
    AskImport,
    /// Import members and balances from this CSV file.
    Import(PathBuf),
    /// Record the amount typed in the scan line as a sale without a member.
    GuestSale,
    /// The customer's answer (0 to 10) to "how likely are you to recommend us?".
    Recommend(u8),
    /// The customer would rather not answer.
    SkipRecommend,
    /// Compute the program's measures over the last this many days (manager's insights).
    Insights(i64),
    /// Tier-list pages the manager's table needs.
    FetchPages(Vec<PageKey>),
}
