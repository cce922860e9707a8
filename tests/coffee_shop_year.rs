//! A year in a coffee shop: one member, two tills and the real server, the demo program's
//! mechanics (baskets, category multipliers and exclusions, weekend and spend promotions, the
//! coffee stamp card, tiers, returns by line and by amount, a donation, a reward). Every number
//! below is worked out by hand from `assets/program.toml`, written down, and checked at the
//! till that wrote it, at the other till after sync, and on the server.

mod common;

use common::TempDb;
use common::server::{Backend, Server, Till, add_terminal, database};
use tillpass::domain::basket::SaleLine;
use tillpass::domain::quote::Sale;
use tillpass::domain::returns::Returned;
use tillpass::domain::{MemberId, MemberInput, Timestamp};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(super::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(super::Backend::Postgres) })*
        }
    };
}

on_both_backends!(a_year_in_a_coffee_shop);

/// 10:00 UTC on a day of 2026 (London is on GMT in winter, BST from 29 March).
fn day(date: &str) -> Timestamp {
    Timestamp::parse_rfc3339(&format!("2026-{date}T10:00:00Z")).expect("time")
}

fn item(name: &str, category: &str, quantity: i64, amount: i64) -> SaleLine {
    SaleLine::item(name, category, quantity, amount)
}

/// Balance, tier name and coffee stamps as `till` sees them at `at`.
fn seen(till: &Till, member: MemberId, at: Timestamp) -> (i64, String, i64) {
    let s = till.store.summary_at(member, at).expect("summary");
    let stamps = till.store.stamps_held(member).expect("stamps");
    (
        s.balance,
        till.store.program().tier(s.tier).name.clone(),
        stamps.get("coffee").copied().unwrap_or(0),
    )
}

fn sync_both(a: &mut Till, b: &mut Till) {
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    a.sync().expect("sync a again");
}

fn a_year_in_a_coffee_shop(backend: Backend) {
    let dir = TempDb::new();
    let Some(db) = database(backend, dir.dir.path()) else {
        return;
    };
    let (token_a, token_b) = (add_terminal(&db, "counter"), add_terminal(&db, "kiosk"));
    let server = Server::start(&db);
    let mut a = Till::join(&server.url, &token_a);
    let mut b = Till::join(&server.url, &token_b);

    // 5 January (a Monday), till A: Maya joins. Welcome bonus 100.
    let maya = a
        .store
        .add_member(
            MemberInput {
                name: "Maya Okafor".into(),
                ..Default::default()
            },
            "ann",
            day("01-05"),
        )
        .expect("enrol")
        .member
        .id;
    // Two lattes and a croissant, 9.20: 92 base; two coffee stamps.
    let breakfast = [
        item("Latte", "coffee", 2, 640),
        item("Croissant", "pastry", 1, 280),
    ];
    let q = a
        .store
        .quote(maya, Sale::Lines(&breakfast), day("01-05"))
        .expect("quote");
    let steps: Vec<&str> = q.steps.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        steps,
        ["92 base on 9.20 GBP", "+2 Coffee card stamps: 2 of 9"]
    );
    let e = a
        .store
        .earn_sale(maya, Sale::Lines(&breakfast), "ann", day("01-05"))
        .expect("breakfast");
    assert_eq!(e.points, 92);
    assert_eq!(seen(&a, maya, day("01-05")), (192, "Green".into(), 2));
    sync_both(&mut a, &mut b);

    // 10 January (a Saturday), till B: two pastries, 5.80: 58 base, doubled at weekends (+58).
    let pastries = [
        item("Croissant", "pastry", 1, 280),
        item("Pain au chocolat", "pastry", 1, 300),
    ];
    let q = b
        .store
        .quote(maya, Sale::Lines(&pastries), day("01-10"))
        .expect("quote");
    let steps: Vec<&str> = q.steps.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        steps,
        [
            "58 base on 5.80 GBP",
            "+58 Double points on pastries at weekends"
        ]
    );
    let e = b
        .store
        .earn_sale(maya, Sale::Lines(&pastries), "bo", day("01-10"))
        .expect("pastries");
    assert_eq!(e.points, 116);
    assert_eq!(seen(&b, maya, day("01-10")), (308, "Green".into(), 2));
    sync_both(&mut a, &mut b);

    // 2 February, till A: two bags of beans (24.00) and a latte (3.20): 272 base; beans x2
    // (+240); 24.00 on beans takes the 100-point bonus. 612 points, one stamp.
    let beans = [
        item("House beans 250g", "beans", 2, 2_400),
        item("Latte", "coffee", 1, 320),
    ];
    let e = a
        .store
        .earn_sale(maya, Sale::Lines(&beans), "ann", day("02-02"))
        .expect("beans");
    assert_eq!(e.points, 612);
    // 3 February, till A: a 50.00 gift card earns nothing; the latte 32, one stamp.
    let gift = [
        item("Gift card", "gift-card", 1, 5_000),
        item("Latte", "coffee", 1, 320),
    ];
    let e = a
        .store
        .earn_sale(maya, Sale::Lines(&gift), "ann", day("02-03"))
        .expect("gift card");
    assert_eq!((e.points, e.amount_minor), (32, Some(5_320)));
    assert_eq!(seen(&a, maya, day("02-03")), (952, "Green".into(), 4));
    sync_both(&mut a, &mut b);

    // 1 March, till B: six lattes, 19.20: 192 points, six stamps (10 held). Qualifying points
    // reach 1,044: Silver. Purchases in January, February and March: the "Three months
    // running" badge and its 50 points. The full card buys a free coffee: one stamp left.
    let six = [item("Latte", "coffee", 6, 1_920)];
    let e = b
        .store
        .earn_sale(maya, Sale::Lines(&six), "bo", day("03-01"))
        .expect("six lattes");
    assert_eq!(e.points, 192);
    assert_eq!(seen(&b, maya, day("03-01")), (1_194, "Silver".into(), 10));
    let badges = b.store.badges(maya).expect("badges");
    assert_eq!(badges, ["three-months"]);
    b.store
        .redeem_stamps(maya, "coffee", "bo", day("03-01").plus_millis(60_000))
        .expect("the free coffee");
    assert_eq!(seen(&b, maya, day("03-01")), (1_194, "Silver".into(), 1));
    sync_both(&mut a, &mut b);

    // 6 April, till A, as Silver: a bag of beans, 12.00: 120 base, x1.25 Silver (+30), beans
    // x2 (+150): 300. Under 20.00 on beans: no bonus.
    let bag = [item("House beans 250g", "beans", 1, 1_200)];
    let q = a
        .store
        .quote(maya, Sale::Lines(&bag), day("04-06"))
        .expect("quote");
    let steps: Vec<&str> = q.steps.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        steps,
        ["120 base on 12.00 GBP", "+30 ×1.25 Silver", "+150 beans ×2"]
    );
    let bag_sale = a
        .store
        .earn_sale(maya, Sale::Lines(&bag), "ann", day("04-06"))
        .expect("bag");
    assert_eq!(bag_sale.points, 300);
    // 7 April: the bag comes back. All 300 points and the 12.00 go back.
    let back = a
        .store
        .refund(bag_sale.id, Returned::Lines(&[(0, 1)]), "ann", day("04-07"))
        .expect("return");
    assert_eq!((back.points, back.amount_minor), (-300, Some(-1_200)));
    assert_eq!(seen(&a, maya, day("04-07")), (1_194, "Silver".into(), 1));
    sync_both(&mut a, &mut b);

    // 4 May, till B: Maya gives 144 points to the food bank. 5 May, till A: a coffee, 500.
    b.store
        .donate(maya, "food-bank", 144, "bo", day("05-04"))
        .expect("donation");
    sync_both(&mut a, &mut b);
    a.store
        .redeem(maya, "coffee", "ann", day("05-05"))
        .expect("coffee");
    assert_eq!(seen(&a, maya, day("05-05")), (550, "Silver".into(), 1));

    // 1 June, till A: a typed 10.00 as Silver earns 125; 4.00 of it comes back: 50 points.
    let typed = a
        .store
        .earn(maya, 1_000, "ann", day("06-01"))
        .expect("typed sale");
    assert_eq!(typed.points, 125);
    let part = a
        .store
        .refund(
            typed.id,
            Returned::Amount(400),
            "ann",
            day("06-01").plus_millis(60_000),
        )
        .expect("part back");
    assert_eq!(part.points, -50);
    sync_both(&mut a, &mut b);

    // The year's end, everywhere: 625 points (100 + 92 + 116 + 612 + 32 + 192 + 50 + 300 - 300
    // - 144 - 500 + 125 - 50), one coffee stamp, Silver on 1,119 qualifying points (every sale
    // and return: 92 + 116 + 612 + 32 + 192 + 300 - 300 + 125 - 50; a badge's points do not
    // qualify), the one badge, 144 points for the food bank.
    let at = day("06-02");
    for till in [&a, &b] {
        assert_eq!(seen(till, maya, at), (625, "Silver".into(), 1));
        assert_eq!(till.store.badges(maya).expect("badges"), ["three-months"]);
        assert_eq!(
            till.store.summary_at(maya, at).expect("summary").qualifying,
            1_119
        );
        let causes = till.store.cause_totals().expect("causes");
        assert_eq!(
            causes
                .iter()
                .map(|c| (c.cause.as_str(), c.points, c.gifts))
                .collect::<Vec<_>>(),
            [("food-bank", 144, 1)]
        );
    }
    assert_eq!(a.balances(), b.balances());
    let on_server =
        tillpass::sync::live_balance(&mut a.store, maya, tillpass::sync::client::REQUEST_TIMEOUT)
            .expect("the server answers");
    assert_eq!(on_server, Some(625));
    drop(server);
}
