//! Pure loyalty domain: no IO, no clocks, no randomness. Callers pass time and ids in.

pub mod badges;
pub mod basket;
pub mod card;
pub mod causes;
pub mod entry;
pub mod import;
pub mod insights;
pub mod member;
pub mod merge;
pub mod money;
pub mod offers;
pub mod partners;
pub mod phone;
pub mod possible;
pub mod program;
pub mod promotion;
pub mod quote;
pub mod referrals;
pub mod returns;
pub mod rules;
pub mod stamps;
pub mod summary;
pub mod timestamp;

pub use card::CardNumber;
pub use entry::{Entry, EntryId, EntryKind, MemberId, TerminalId};
pub use member::{Member, MemberInput, MemberRecord, NewMember, RetiredCard};
pub use program::{ConfigError, Program};
pub use rules::Refusal;
pub use summary::MemberSummary;
pub use timestamp::Timestamp;
