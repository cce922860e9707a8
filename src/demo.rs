//! Realistic demo data: members with a year of varied purchase history, made through the same
//! program rules as real sales, for demos and benchmarks.

use std::sync::mpsc;

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;

use crate::domain::card::PAYLOAD_LIMIT;
use crate::domain::entry::uuid_v7;
use crate::domain::quote::Sale;
use crate::domain::rules::{self, Draft};
use crate::domain::summary::summarise;
use crate::domain::timestamp::DAY_MS;
use crate::domain::{CardNumber, Entry, EntryId, Member, MemberId, Program, TerminalId, Timestamp};
use crate::store::{HistoricMember, PastAnswer, PastGuestSale, Store, StoreError};

const FIRST_NAMES: &[&str] = &[
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Ivy",
    "Freya",
    "Lily",
    "Florence",
    "Mia",
    "Willow",
    "Rosie",
    "Sophia",
    "Isabella",
    "Grace",
    "Daisy",
    "Sienna",
    "Poppy",
    "Elsie",
    "Emily",
    "Ella",
    "Evelyn",
    "Phoebe",
    "Sofia",
    "Evie",
    "Charlotte",
    "Harper",
    "Matilda",
    "Aisha",
    "Priya",
    "Zara",
    "Noah",
    "Muhammad",
    "George",
    "Oliver",
    "Leo",
    "Arthur",
    "Oscar",
    "Theodore",
    "Freddie",
    "Theo",
    "Archie",
    "Jack",
    "Alfie",
    "Henry",
    "Charlie",
    "Finley",
    "Teddy",
    "Thomas",
    "Arlo",
    "Lucas",
    "Isaac",
    "Tommy",
    "Rory",
    "Jacob",
    "Reuben",
    "Hugo",
    "Ravi",
    "Kwame",
    "Tomasz",
    "Niamh",
    "Siobhan",
    "Dylan",
    "Rhys",
    "Ewan",
    "Callum",
    "Chloe",
    "Megan",
    "Ruby",
    "Hannah",
];

const SURNAMES: &[&str] = &[
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Thomas",
    "Clarke",
    "Jackson",
    "Wood",
    "Harris",
    "Edwards",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Hughes",
    "Moore",
    "Clark",
    "King",
    "Harrison",
    "Lewis",
    "Baker",
    "Lee",
    "Allen",
    "Morris",
    "Khan",
    "Scott",
    "Watson",
    "Davis",
    "Parker",
    "James",
    "Bennett",
    "Young",
    "Phillips",
    "Richardson",
    "Mitchell",
    "Bailey",
    "Carter",
    "Cook",
    "Singh",
    "Shaw",
    "Bell",
    "Collins",
    "Morgan",
    "Kelly",
    "Begum",
    "Miller",
    "Cox",
    "Hussain",
    "Marshall",
    "Simpson",
    "Nowak",
    "O'Brien",
    "Murphy",
    "Okafor",
    "Mensah",
    "Kowalski",
    "Ali",
    "Ahmed",
    "Chen",
    "Nguyen",
];

/// Demo tills that "made" the history (this till's own sequence stays untouched).
const DEMO_TERMINALS: [&str; 3] = ["demo-till-1", "demo-till-2", "demo-till-3"];
/// Card payloads are `index * CARD_STRIDE mod 10^9`: a bijection, so cards are unique but not
/// sequential (3^18 shares no factor with 10^9).
const CARD_STRIDE: u64 = 387_420_489;
/// First demo phone number: +44 7400 000000 upwards are valid UK mobile numbers.
const FIRST_PHONE: u64 = 7_400_000_000;
/// Mixed into the seed for the feedback's own random stream.
const FEEDBACK_STREAM: u64 = 0x6665_6564_6261_636b;
/// Members generated and committed together.
const CHUNK: usize = 20_000;

/// What `demo` made.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub members: usize,
    pub entries: usize,
    /// Sales without a member, so members and other customers can be compared.
    pub guest_sales: usize,
    /// Answers to the recommend question, from members and guests.
    pub answers: usize,
    pub seconds: f64,
}

/// Walk-in sales and recommend answers, drawn from their own random stream so that members'
/// histories are the same with or without them.
struct Feedback {
    rng: StdRng,
    answers: Vec<PastAnswer>,
}

/// Makes members and their histories deterministically from a seed.
pub struct DemoGenerator {
    rng: StdRng,
    program: Program,
    now: Timestamp,
    next_index: u64,
    seqs: [i64; 3],
    feedback: Option<Feedback>,
}

impl DemoGenerator {
    /// A generator for `program` whose histories end at `now`.
    pub fn new(program: Program, seed: u64, now: Timestamp) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            program,
            now,
            next_index: 0,
            seqs: [0; 3],
            feedback: None,
        }
    }

    /// Also makes sales without a member and answers to the recommend question (see
    /// [`DemoGenerator::take_feedback`]).
    pub fn with_feedback(mut self, seed: u64) -> Self {
        self.feedback = Some(Feedback {
            rng: StdRng::seed_from_u64(seed ^ FEEDBACK_STREAM),
            answers: Vec::new(),
        });
        self
    }

    /// The walk-in sales of a shop with `members` more members over the last year (one to
    /// four each, smaller baskets than members'; a tenth of the guests answer the recommend
    /// question, less kindly than members), and the members' answers made since the last
    /// call: about one visit in eight, promoters growing over the year.
    pub fn take_feedback(&mut self, members: usize) -> (Vec<PastGuestSale>, Vec<PastAnswer>) {
        let now = self.now;
        let Some(feedback) = self.feedback.as_mut() else {
            return (Vec::new(), Vec::new());
        };
        let rng = &mut feedback.rng;
        let mut sales = Vec::new();
        for _ in 0..members {
            for _ in 0..rng.random_range(1..=4) {
                let at = now.plus_millis(-rng.random_range(0..365 * DAY_MS));
                let amount_minor = match rng.random_range(0..10) {
                    0..7 => rng.random_range(250..700),
                    _ => rng.random_range(700..2000),
                };
                let answer = rng.random_bool(0.1).then(|| score(rng, 0.3, 0.3));
                sales.push(PastGuestSale {
                    id: uuid_v7(at, rng.random()),
                    at,
                    amount_minor,
                    terminal: demo_terminal(rng),
                    answer,
                });
            }
        }
        (sales, std::mem::take(&mut feedback.answers))
    }

    /// With feedback on, the member may answer the recommend question after the sale at `at`.
    fn maybe_answer(&mut self, member: MemberId, at: Timestamp) {
        let year_ago = self.now.millis() - 365 * DAY_MS;
        let Some(feedback) = self.feedback.as_mut() else {
            return;
        };
        let rng = &mut feedback.rng;
        if !rng.random_bool(0.125) {
            return;
        }
        let into_year = ((at.millis() - year_ago) as f64 / (365 * DAY_MS) as f64).clamp(0.0, 1.0);
        let score = score(rng, 0.45 + 0.2 * into_year, 0.2 - 0.08 * into_year);
        let terminal = demo_terminal(rng);
        feedback.answers.push(PastAnswer {
            member,
            at: at.plus_millis(30_000),
            score,
            terminal,
        });
    }

    /// The next `n` members with their entries.
    pub fn next_chunk(&mut self, n: usize) -> Vec<HistoricMember> {
        (0..n).map(|_| self.next_member()).collect()
    }

    fn next_member(&mut self) -> HistoricMember {
        let index = self.next_index;
        self.next_index += 1;
        let rng = &mut self.rng;
        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = SURNAMES[rng.random_range(0..SURNAMES.len())];
        let created_at = self
            .now
            .plus_millis(-rng.random_range(DAY_MS..365 * DAY_MS));
        let email_local: String = format!("{first}.{last}{index}")
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let member = Member {
            id: MemberId(uuid_v7(created_at, rng.random())),
            card: CardNumber::from_payload(index.wrapping_mul(CARD_STRIDE) % PAYLOAD_LIMIT),
            name: format!("{first} {last}"),
            phone: rng
                .random_bool(0.8)
                .then(|| format!("+44{}", FIRST_PHONE + index)),
            email: rng
                .random_bool(0.5)
                .then(|| format!("{email_local}@example.com")),
            birthday: rng.random_bool(0.6).then(|| {
                let day = rng.random_range(0..365 * 55);
                time::macros::date!(1950 - 01 - 01) + time::Duration::days(day)
            }),
            marketing_consent: rng.random_bool(0.4),
            created_at,
        };
        let entries = self.history(&member);
        HistoricMember { member, entries }
    }

    /// A year's worth of visits: most members come a few times, a few come very often.
    fn history(&mut self, member: &Member) -> Vec<Entry> {
        let mut entries: Vec<Entry> = Vec::new();
        if let Some(draft) = rules::welcome(&self.program) {
            self.push(&mut entries, member.id, draft, member.created_at);
        }
        let visits = match self.rng.random_range(0..100) {
            0..50 => self.rng.random_range(0..3),
            50..85 => self.rng.random_range(3..10),
            85..97 => self.rng.random_range(10..25),
            _ => self.rng.random_range(25..60),
        };
        let start = member.created_at.millis();
        let span = (self.now.millis() - start).max(1);
        let mut times: Vec<i64> = (0..visits)
            .map(|_| start + self.rng.random_range(0..span))
            .collect();
        times.sort_unstable();
        let mut birthday_checked = member.created_at.date();
        for t in times {
            let at = Timestamp::from_millis(t);
            self.maybe_birthday(&mut entries, member, &mut birthday_checked, at);
            let amount = match self.rng.random_range(0..10) {
                0..6 => self.rng.random_range(250..800),
                6..9 => self.rng.random_range(800..2500),
                _ => self.rng.random_range(2500..8000),
            };
            let tier = summarise(&self.program, &entries, at).tier;
            let Ok(draft) = rules::earn(&self.program, tier, Sale::Amount(amount), at) else {
                continue;
            };
            let earned = self.push(&mut entries, member.id, draft, at);
            self.maybe_answer(member.id, at);
            if self.rng.random_bool(0.02) {
                let original = entries[earned].clone();
                if let Ok(draft) = rules::reverse(&original, false) {
                    self.push(&mut entries, member.id, draft, at.plus_millis(300_000));
                }
            } else if self.rng.random_bool(0.3) {
                self.maybe_redeem(&mut entries, member.id, at.plus_millis(1_000));
            }
        }
        self.maybe_birthday(&mut entries, member, &mut birthday_checked, self.now);
        entries
    }

    fn maybe_redeem(&mut self, entries: &mut Vec<Entry>, member: MemberId, at: Timestamp) {
        // Only what is spendable: points still in their sale's return window are not.
        let now = summarise(&self.program, entries, at);
        let pending = crate::domain::summary::pending(&self.program, entries, at);
        let summary = crate::domain::MemberSummary {
            balance: crate::domain::summary::available(&now, pending),
            ..now
        };
        let used = rules::redeemed_in_last_day(entries, at);
        let affordable: Vec<String> = self
            .program
            .rewards
            .iter()
            .filter(|r| rules::redeem(&self.program, &summary, &r.id, Some(used)).is_ok())
            .map(|r| r.id.clone())
            .collect();
        if affordable.is_empty() {
            return;
        }
        let pick = &affordable[self.rng.random_range(0..affordable.len())];
        if let Ok((_, draft)) = rules::redeem(&self.program, &summary, pick, Some(used)) {
            self.push(entries, member, draft, at);
        }
    }

    /// Adds the birthday bonuses due after `checked` up to `until`, then moves `checked` on.
    fn maybe_birthday(
        &mut self,
        entries: &mut Vec<Entry>,
        member: &Member,
        checked: &mut time::Date,
        until: Timestamp,
    ) {
        let Some(born) = member.birthday else {
            return;
        };
        let end = until.date();
        for year in checked.year()..=end.year() {
            let Some(day) = rules::birthday_in(born, year) else {
                continue;
            };
            if day <= *checked || day > end {
                continue;
            }
            if let Some(draft) = rules::birthday(&self.program, Some(born), day, entries) {
                let midnight = day.midnight().assume_utc().unix_timestamp() * 1000;
                self.push(entries, member.id, draft, Timestamp::from_millis(midnight));
            }
        }
        *checked = (*checked).max(end);
    }

    /// Appends an entry made at a random demo till; returns its index.
    fn push(
        &mut self,
        entries: &mut Vec<Entry>,
        member: MemberId,
        d: Draft,
        at: Timestamp,
    ) -> usize {
        let till = self.rng.random_range(0..DEMO_TERMINALS.len());
        self.seqs[till] += 1;
        entries.push(d.into_entry(
            EntryId(uuid_v7(at, self.rng.random())),
            TerminalId(DEMO_TERMINALS[till].to_owned()),
            self.seqs[till],
            member,
            at,
            "demo",
        ));
        entries.len() - 1
    }
}

/// A score of 0 to 10: a promoter (9-10) with chance `promoters`, a detractor (0-6, mostly 5
/// or 6) with chance `detractors`, a passive (7-8) otherwise.
fn score(rng: &mut StdRng, promoters: f64, detractors: f64) -> i64 {
    let draw: f64 = rng.random();
    if draw < promoters {
        rng.random_range(9..=10)
    } else if draw < promoters + detractors {
        if rng.random_bool(0.7) {
            rng.random_range(5..=6)
        } else {
            rng.random_range(0..=4)
        }
    } else {
        rng.random_range(7..=8)
    }
}

fn demo_terminal(rng: &mut StdRng) -> TerminalId {
    TerminalId(DEMO_TERMINALS[rng.random_range(0..DEMO_TERMINALS.len())].to_owned())
}

/// Fills an empty store with `members` demo members. Generation runs on a second thread while
/// this one writes, in chunks; `progress` hears the running member count after each chunk.
pub fn seed(
    store: &mut Store,
    members: usize,
    seed: u64,
    now: Timestamp,
    mut progress: impl FnMut(usize),
) -> Result<DemoReport, StoreError> {
    if !store.is_empty()? {
        return Err(StoreError::NotEmpty);
    }
    if store.sync_settings()?.server_url.is_some() {
        return Err(StoreError::DemoOnJoinedTill);
    }
    let started = std::time::Instant::now();
    type Chunk = (Vec<HistoricMember>, Vec<PastGuestSale>, Vec<PastAnswer>);
    let (tx, rx) = mpsc::sync_channel::<Chunk>(2);
    let mut generator = DemoGenerator::new(store.program().clone(), seed, now).with_feedback(seed);
    let producer = std::thread::spawn(move || {
        let mut left = members;
        while left > 0 {
            let n = left.min(CHUNK);
            let chunk = generator.next_chunk(n);
            let (sales, answers) = generator.take_feedback(n);
            if tx.send((chunk, sales, answers)).is_err() {
                break;
            }
            left -= n;
        }
    });
    let mut done = 0;
    let mut entries = 0;
    let mut guest_sales = 0;
    let mut answers = 0;
    for (chunk, sales, said) in rx {
        store.load_history(&chunk, now)?;
        store.load_feedback(&sales, &said)?;
        done += chunk.len();
        entries += chunk.iter().map(|h| h.entries.len()).sum::<usize>();
        guest_sales += sales.len();
        answers += said.len() + sales.iter().filter(|s| s.answer.is_some()).count();
        progress(done);
    }
    producer.join().map_err(|_| StoreError::BadEntry {
        id: EntryId(uuid::Uuid::nil()),
        reason: "the demo generator thread failed".to_owned(),
    })?;
    Ok(DemoReport {
        members: done,
        entries,
        guest_sales,
        answers,
        seconds: started.elapsed().as_secs_f64(),
    })
}
