//! The till app driven headlessly (egui_kittest) against a real SQLite file, with the real
//! store worker thread. `settle` blocks until the worker has answered; nothing sleeps.

mod common;

use common::{NOW, TempDb, enrol};
use egui::{Event, Key};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use tillpass::domain::MemberInput;
use tillpass::domain::basket::SaleLine;
use tillpass::domain::quote::Sale;
use tillpass::store::Store;
use tillpass::ui::{Action, Dialog, PinPrompt, PinPurpose, Screen, TillApp, WalletDialog};

fn harness(db: &TempDb) -> Harness<'static, TillApp> {
    harness_sized(db, [1280.0, 760.0])
}

/// The till on a screen of `size` points.
fn harness_sized(db: &TempDb, size: [f32; 2]) -> Harness<'static, TillApp> {
    let path = db.path.clone();
    let exports = db.dir.path().join("exports");
    let mut h = Harness::builder()
        .with_size(size)
        .build_eframe(move |cc| TillApp::new(&cc.egui_ctx, path, exports, "kittest".into()));
    settle(&mut h);
    h
}

/// Waits for every outstanding store reply, then lets the UI draw the result.
fn settle(h: &mut Harness<'static, TillApp>) {
    h.run_steps(2);
    h.state_mut().settle();
    h.run_steps(3);
}

/// Types text the way a keyboard-wedge scanner does: every character in one burst, then Enter,
/// all delivered within a single frame.
fn wedge(h: &mut Harness<'static, TillApp>, text: &str) {
    burst(h, text, Key::Enter);
    settle(h);
}

/// Delivers `text`, then a press of `key`, all within one frame (the harness's own `event`
/// gives each event a frame of its own).
fn burst(h: &mut Harness<'static, TillApp>, text: &str, key: Key) {
    let events = &mut h.input_mut().events;
    events.extend(text.chars().map(|c| Event::Text(c.to_string())));
    for pressed in [true, false] {
        events.push(Event::Key {
            key,
            physical_key: None,
            pressed,
            repeat: false,
            modifiers: egui::Modifiers::NONE,
        });
    }
    h.run_steps(1);
}

/// A text field by its label (the label text itself is a separate node).
fn field<'h>(h: &'h Harness<'static, TillApp>, label: &'h str) -> egui_kittest::Node<'h> {
    h.get_by_role_and_label(egui::Role::TextInput, label)
}

/// Clicks a field, as a person would, then types into it on the next frame.
fn fill(h: &mut Harness<'static, TillApp>, label: &str, text: &str) {
    field(h, label).click();
    h.run_steps(1);
    field(h, label).type_text(text);
    h.run_steps(1);
}

/// The status line's text.
fn status_line(h: &Harness<'static, TillApp>) -> String {
    h.state()
        .message()
        .map(|m| m.text.clone())
        .unwrap_or_default()
}

fn entries(db: &TempDb) -> i64 {
    Store::open(&db.path)
        .expect("open")
        .stats()
        .expect("stats")
        .entries
}

/// Joins the till's store to the server and syncs once, before the app opens it.
fn join_store(db: &TempDb, url: &str, token: &str) {
    let mut store = db.open();
    store.set_sync_server(url, token).expect("save");
    let client = tillpass::sync::client_for(&store).expect("client");
    tillpass::sync::sync_once(&mut store, &client, common::server::now()).expect("join");
}

/// A store with one member holding `points` (welcome bonus plus a manager adjustment).
fn store_with_member(db: &TempDb, points: i64) -> (String, tillpass::store::MemberView) {
    let mut store = db.open();
    let view = enrol(&mut store, "Grace Hopper");
    if points > 100 {
        store
            .adjust(view.member.id, points - 100, "test float", "test", NOW)
            .expect("adjust");
    }
    let code = store.member_code(&view.member.card);
    (code, store.member(view.member.id).expect("member"))
}

#[test]
fn a_scan_shows_the_member() {
    let db = TempDb::new();
    let (code, view) = store_with_member(&db, 100);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    h.get_by_label("Grace Hopper");
    h.get_by_label("100 points");
    h.get_by_label(&format!("Card {}", view.member.card.grouped()));
    assert_eq!(
        h.state().member().map(|m| m.view.member.id),
        Some(view.member.id)
    );
}

#[test]
fn a_name_search_is_picked_from_with_the_keyboard() {
    let db = TempDb::new();
    let (ada, bea) = {
        let mut store = db.open();
        for _ in 0..21 {
            enrol(&mut store, "Cy Smith");
        }
        (
            enrol(&mut store, "Ada Hopper").member.id,
            enrol(&mut store, "Bea Hopper").member.id,
        )
    };
    let mut h = harness(&db);
    // More than the list holds: said, with what to do.
    wedge(&mut h, "Smith");
    assert!(
        status_line(&h).starts_with("More than 20 members found, the first 20 listed"),
        "{}",
        status_line(&h)
    );
    wedge(&mut h, "Hopper");
    assert!(
        status_line(&h).starts_with("2 members found"),
        "{}",
        status_line(&h)
    );
    assert_eq!(h.state().member().map(|m| m.view.member.id), None);
    // Down moves to the second, Up wraps back past the first to it again, Enter opens it.
    for key in [Key::ArrowDown, Key::ArrowUp, Key::ArrowUp] {
        h.key_press(key);
        h.run_steps(1);
    }
    wedge(&mut h, "");
    assert_eq!(h.state().member().map(|m| m.view.member.id), Some(bea));
    // One found: Enter opens them. The search typed in the same frame as Esc (a scan right
    // after Esc) is read whole.
    h.input_mut().events.push(Event::Key {
        key: Key::Escape,
        physical_key: None,
        pressed: true,
        repeat: false,
        modifiers: egui::Modifiers::NONE,
    });
    wedge(&mut h, "Ada");
    assert_eq!(status_line(&h), "1 member found: Enter to open them");
    wedge(&mut h, "");
    assert_eq!(h.state().member().map(|m| m.view.member.id), Some(ada));
}

#[test]
fn a_wedge_burst_is_read_whole_and_forged_codes_are_refused() {
    let db = TempDb::new();
    let (code, _) = store_with_member(&db, 100);
    let mut h = harness(&db);
    // Half a scan in one frame, the rest in the next: still one line.
    let (a, b) = code.split_at(12);
    for c in a.chars() {
        h.event(Event::Text(c.to_string()));
    }
    h.run_steps(1);
    for c in b.chars() {
        h.event(Event::Text(c.to_string()));
    }
    h.key_press(Key::Enter);
    settle(&mut h);
    h.get_by_label("Grace Hopper");
    assert!(
        h.state().scan_text().is_empty(),
        "the field is clear for the next scan"
    );
    h.key_press(Key::Escape);
    h.run_steps(2);
    let forged = format!("{}A", &code[..code.len() - 1]);
    let forged = if forged == code {
        format!("{}B", &code[..code.len() - 1])
    } else {
        forged
    };
    wedge(&mut h, &forged);
    assert!(h.state().member().is_none());
    let message = status_line(&h);
    assert!(message.contains("signature is wrong"), "{message}");
}

#[test]
fn a_refused_scan_takes_the_last_customer_off_the_screen_and_a_mistyped_amount_does_not() {
    let db = TempDb::new();
    let (code, _) = store_with_member(&db, 100);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    wedge(&mut h, "-5");
    assert!(
        status_line(&h).contains("is not a sale amount"),
        "{}",
        status_line(&h)
    );
    h.get_by_label("Grace Hopper");
    let before = entries(&db);
    let forged = format!(
        "{}{}",
        &code[..code.len() - 1],
        if code.ends_with('A') { 'B' } else { 'A' }
    );
    wedge(&mut h, &forged);
    assert!(
        h.state().member().is_none(),
        "Grace is not the next customer"
    );
    burst(&mut h, "3.00", Key::F5);
    settle(&mut h);
    assert_eq!(entries(&db), before, "no sale went to the last customer");
}

#[test]
fn an_amount_the_program_refuses_is_said_at_once_and_drops_the_preview() {
    let db = TempDb::new();
    let (mut h, before) = previewed_sale(&db);
    wedge(&mut h, "1000.01");
    let message = status_line(&h);
    assert!(!message.contains("press Enter"), "{message}");
    assert!(
        h.query_by_label("earns 125 points").is_none(),
        "the 12.50 preview is gone"
    );
    wedge(&mut h, "");
    assert_eq!(entries(&db), before, "Enter earned nothing");
}

#[test]
fn the_keypad_stays_put_through_a_preview_a_sale_and_the_question() {
    let db = TempDb::new();
    let (code, _) = store_with_member(&db, 100);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    let at_first = h.get_by_label("Del").rect();
    wedge(&mut h, "3.20");
    h.get_by_label("earns 32 points");
    assert_eq!(h.get_by_label("Del").rect(), at_first, "with the preview");
    wedge(&mut h, "");
    assert!(
        h.state().cashier().ask.is_some(),
        "the sale was made and the question is up"
    );
    assert_eq!(h.get_by_label("Del").rect(), at_first, "after the sale");
}

/// A till showing a member with 100 points and a previewed £12.50 sale; the entries before it.
fn previewed_sale(db: &TempDb) -> (Harness<'static, TillApp>, i64) {
    let (code, _) = store_with_member(db, 100);
    let before = entries(db);
    let mut h = harness(db);
    wedge(&mut h, &code);
    wedge(&mut h, "12.50");
    h.get_by_label("earns 125 points");
    h.get_by_label("125 base on 12.50 GBP");
    (h, before)
}

#[test]
fn earn_updates_the_balance_and_writes_one_entry() {
    let db = TempDb::new();
    let (mut h, before) = previewed_sale(&db);
    assert_eq!(entries(&db), before, "a preview writes nothing");
    h.key_press(Key::F5);
    settle(&mut h);
    h.get_by_label("225 points");
    assert_eq!(entries(&db), before + 1);
    let message = status_line(&h);
    assert!(message.contains("Earned 125 points"), "{message}");
}

/// F5 earns the amount in the scan line: typed and pressed within one frame (a quick cashier),
/// or typed over a preview to correct it, the amount typed is the one earned.
#[test]
fn f5_earns_the_amount_typed_even_in_the_frame_it_was_typed() {
    let db = TempDb::new();
    let (code, _) = store_with_member(&db, 100);
    let before = entries(&db);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    burst(&mut h, "12.50", Key::F5);
    settle(&mut h);
    let message = status_line(&h);
    assert!(message.contains("Earned 125 points"), "{message}");
    h.get_by_label("225 points");
    assert!(h.state().scan_text().is_empty(), "the amount was taken");
    // A preview of 3.00, corrected to 20.00 before F5: the 20.00 is earned.
    wedge(&mut h, "3.00");
    h.get_by_label("earns 30 points");
    burst(&mut h, "20.00", Key::F5);
    settle(&mut h);
    let message = status_line(&h);
    assert!(message.contains("Earned 200 points"), "{message}");
    h.get_by_label("425 points");
    assert_eq!(entries(&db), before + 2);
}

#[test]
fn redeem_with_too_few_points_says_so_and_writes_nothing() {
    let db = TempDb::new();
    let (code, _) = store_with_member(&db, 100);
    let before = entries(&db);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    h.key_press(Key::ArrowDown);
    h.key_press(Key::ArrowDown);
    h.run_steps(2);
    assert_eq!(h.state().selected_reward(), Some(1), "Any coffee");
    h.key_press(Key::F6);
    settle(&mut h);
    let message = status_line(&h);
    assert!(message.starts_with("Not enough points"), "{message}");
    assert_eq!(entries(&db), before);

    // With enough points the same keys redeem, and one entry is written.
    let mut store = db.open();
    let member = h
        .state()
        .member()
        .map(|m| m.view.member.id)
        .expect("member");
    store
        .adjust(member, 1000, "top up", "test", NOW)
        .expect("adjust");
    drop(store);
    wedge(&mut h, &code);
    h.key_press(Key::ArrowDown);
    h.key_press(Key::ArrowDown);
    h.key_press(Key::F6);
    settle(&mut h);
    h.get_by_label("600 points");
    assert_eq!(entries(&db), before + 2);
}

#[test]
fn reverse_needs_the_manager_pin() {
    let db = TempDb::new();
    let (code, _) = store_with_member(&db, 100);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    wedge(&mut h, "30");
    h.key_press(Key::F5);
    settle(&mut h);
    let after_earn = entries(&db);

    // No PIN set yet: refused, with the way forward.
    h.key_press(Key::F8);
    h.run_steps(2);
    assert!(h.state().dialog().is_none());
    let message = status_line(&h);
    assert!(message.contains("manager PIN"), "{message}");

    db.open().set_manager_pin("2468").expect("set pin");
    drop(h);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    h.key_press(Key::F8);
    h.run_steps(2);
    // The dialog says what the PIN will undo.
    let what = match h.state().dialog() {
        Some(Dialog::Pin(PinPrompt {
            purpose: PinPurpose::Reverse { what, .. },
            ..
        })) => what.clone(),
        _ => panic!("no reversal PIN dialog"),
    };
    assert!(
        what.starts_with("Grace Hopper's purchase of 30.00 GBP, +300 points, "),
        "{what}"
    );
    h.get_by_label(&what);
    wedge(&mut h, "1111");
    let error = match h.state().dialog() {
        Some(Dialog::Pin(prompt)) => prompt.error.clone().unwrap_or_default(),
        _ => String::new(),
    };
    assert_eq!(error, "wrong manager PIN");
    assert_eq!(entries(&db), after_earn, "a wrong PIN writes nothing");

    wedge(&mut h, "2468");
    assert!(h.state().dialog().is_none());
    assert_eq!(entries(&db), after_earn + 1, "one reversal");
    h.get_by_label("100 points");
    let last = db
        .open()
        .history(h.state().member().map(|m| m.view.member.id).expect("m"), 1)
        .expect("history");
    assert_eq!(last[0].kind, tillpass::domain::EntryKind::Reverse);
    assert_eq!(last[0].points, -300);
    // The last transaction here is now the reversal: F8 says so and asks for no PIN.
    h.key_press(Key::F8);
    h.run_steps(2);
    assert!(h.state().dialog().is_none());
    assert_eq!(
        status_line(&h),
        "Grace Hopper's last transaction at this till is already a reversal"
    );
    assert_eq!(entries(&db), after_earn + 1);
}

#[test]
fn enrol_creates_a_member_and_shows_the_qr() {
    let db = TempDb::new();
    db.open()
        .add_member(
            MemberInput {
                name: "Existing".into(),
                ..Default::default()
            },
            "t",
            NOW,
        )
        .expect("seed");
    let mut h = harness(&db);
    h.key_press(Key::F2);
    h.run_steps(2);
    assert_eq!(h.state().screen(), Screen::Enrol);
    fill(&mut h, "Name", "Ada Lovelace");
    fill(&mut h, "Phone", "07400 123456");
    fill(&mut h, "Email", "ada@example.com");
    h.run_steps(1);
    // A tap on the consent's words ticks its box, and the consent is kept with the member.
    h.get_by_label("Agrees to marketing messages").click();
    h.run_steps(1);
    h.get_by_label("Enrol member").click();
    settle(&mut h);
    let message = status_line(&h);
    assert!(message.starts_with("Welcome, Ada Lovelace"), "{message}");
    h.get_by_label("Welcome, Ada Lovelace");
    let (enrolled_id, enrolled_code) = h
        .state()
        .enrolled()
        .map(|m| (m.view.member.id, m.code.clone()))
        .expect("enrolled, with the QR code on screen");
    let store = db.open();
    let found = store
        .member_by_phone("+447400123456")
        .expect("lookup")
        .expect("stored");
    assert_eq!(found.member.id, enrolled_id);
    assert!(found.member.marketing_consent, "the box ticked is kept");
    assert_eq!(found.state.balance, 100, "welcome bonus");
    assert_eq!(
        store.identify_code(&enrolled_code).expect("code").member.id,
        found.member.id
    );

    // A bad email is refused with the field named, and nothing is stored.
    h.get_by_label("Enrol another").click();
    h.run_steps(2);
    // Enter in the email field enrols, as the legend says.
    fill(&mut h, "Name", "Bob");
    fill(&mut h, "Email", "bob@");
    h.key_press(Key::Enter);
    settle(&mut h);
    let message = status_line(&h);
    assert!(message.starts_with("Email:"), "{message}");
    assert_eq!(db.open().stats().expect("stats").members, 2);
    // The cursor is back in the field the refusal names: what is typed next goes there.
    h.run_steps(2);
    h.input_mut().events.push(Event::Text("x.com".into()));
    h.run_steps(1);
    assert_eq!(field(&h, "Email").value().as_deref(), Some("bob@x.com"));
}

#[test]
fn a_card_scanned_into_the_enrol_form_serves_its_member_and_f1_serves_the_one_enrolled() {
    let db = TempDb::new();
    let (code, grace) = store_with_member(&db, 100);
    let mut h = harness(&db);
    h.key_press(Key::F2);
    h.run_steps(2);
    // A wedge scanner's burst into the name field ends with Enter: no member named after a
    // code, but the card's member on the cashier screen.
    field(&h, "Name").click();
    h.run_steps(1);
    burst(&mut h, &code, Key::Enter);
    settle(&mut h);
    assert_eq!(h.state().screen(), Screen::Cashier);
    assert_eq!(
        h.state().member().map(|m| m.view.member.id),
        Some(grace.member.id)
    );
    assert_eq!(db.open().stats().expect("stats").members, 1);

    // Grace is on the cashier screen; a new member enrolled: F1 serves the new one.
    h.key_press(Key::F2);
    h.run_steps(2);
    fill(&mut h, "Name", "Ada Lovelace");
    h.get_by_label("Enrol member").click();
    settle(&mut h);
    let ada = h
        .state()
        .enrolled()
        .map(|m| m.view.member.id)
        .expect("enrolled");
    h.key_press(Key::F1);
    h.run_steps(2);
    assert_eq!(h.state().screen(), Screen::Cashier);
    assert_eq!(h.state().member().map(|m| m.view.member.id), Some(ada));
}

#[test]
fn the_first_manager_pin_is_typed_twice_with_tab_between() {
    let db = TempDb::new();
    store_with_member(&db, 100);
    let mut h = harness(&db);
    h.key_press(Key::F10);
    h.run_steps(2);
    for key in [None, Some(Key::Tab), None, Some(Key::Enter)] {
        match key {
            Some(key) => h.key_press(key),
            None => h.input_mut().events.push(Event::Text("2468".into())),
        }
        h.run_steps(2);
    }
    settle(&mut h);
    assert_eq!(
        status_line(&h),
        "Manager PIN set: reversals and the manager screen ask for it"
    );
    assert!(h.state().manager().unlocked);
    assert!(db.open().check_manager_pin("2468", NOW).is_ok());
}

#[test]
fn the_manager_tier_list_shows_the_right_counts() {
    let db = TempDb::new();
    let mut store = db.open();
    tillpass::demo::seed(&mut store, 400, 5, NOW, |_| {}).expect("demo");
    store.set_manager_pin("9999").expect("pin");
    let counts = store.tier_counts().expect("counts");
    drop(store);
    let mut h = harness(&db);
    h.key_press(Key::F10);
    h.run_steps(2);
    wedge(&mut h, "9999");
    assert!(h.state().manager().unlocked);
    settle(&mut h);
    for count in &counts {
        h.get_by_label(&format!("{count} members"));
    }
    assert_eq!(h.state().manager().counts, counts);
    // The first tier's table fills from the store.
    settle(&mut h);
    assert_eq!(h.state().manager().count, Some(counts[0]));
    assert!(h.state().manager().row(0).is_some(), "first page loaded");
    // Each tier but the top one shows how far its members are from the next.
    h.get_by_label("To Silver");
    h.get_by_label(&format!("{} members", counts[2])).click();
    settle(&mut h);
    assert_eq!(h.state().manager().count, Some(counts[2]));
    assert!(
        h.query_by_label_contains("To ").is_none() && h.query_by_label("top tier").is_none(),
        "the top tier has no next tier to be far from"
    );
    h.get_by_label(&format!("{} members", counts[0])).click();
    settle(&mut h);
    // A filter narrows the table; Esc (as the legend says) shows it whole again.
    fill(&mut h, "Filter members", "zz");
    settle(&mut h);
    assert_eq!(h.state().manager().count, Some(0));
    h.key_press(Key::Escape);
    settle(&mut h);
    assert_eq!(field(&h, "Filter members").value().as_deref(), Some(""));
    assert_eq!(h.state().manager().count, Some(counts[0]));
    // Leaving the manager screen locks it again.
    h.key_press(Key::F1);
    h.run_steps(2);
    assert!(!h.state().manager().unlocked);
}

#[test]
fn scan_from_image_finds_the_member() {
    let db = TempDb::new();
    let (code, view) = store_with_member(&db, 100);
    let picture = db.dir.path().join("pass.png");
    tillpass::token::qr::write_png(&code, &picture).expect("png");
    let mut h = harness(&db);
    h.get_by_label("Scan from image…").click();
    h.run_steps(2);
    assert!(matches!(h.state().dialog(), Some(Dialog::ImagePath(_))));
    field(&h, "Image path").type_text(picture.to_str().expect("utf-8 path"));
    h.run_steps(1);
    h.key_press(Key::Enter);
    settle(&mut h);
    assert_eq!(
        h.state().member().map(|m| m.view.member.id),
        Some(view.member.id)
    );
    h.get_by_label("Grace Hopper");

    // A picture without a code says so.
    h.key_press(Key::Escape);
    h.run_steps(1);
    let blank = db.dir.path().join("blank.png");
    image::GrayImage::from_pixel(200, 200, image::Luma([255]))
        .save(&blank)
        .expect("blank");
    h.state_mut().act(Action::ScanImage(blank));
    settle(&mut h);
    let message = status_line(&h);
    assert!(message.starts_with("No QR code found"), "{message}");
}

#[test]
fn the_wallet_pass_action_exports_a_pass_and_shows_the_save_link() {
    let db = TempDb::new();
    let (code, view) = store_with_member(&db, 100);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    h.get_by_label("Wallet pass").click();
    settle(&mut h);
    h.get_by_label("Wallet pass for Grace Hopper");
    let pass = db
        .dir
        .path()
        .join(format!("exports/member-{}.pkpass", view.member.card));
    let bytes = std::fs::read(&pass).expect("the pass was exported");
    assert!(bytes.starts_with(b"PK"), "a zip archive");
    assert!(
        h.query_by_label_contains("DEMO: signed with a self-signed")
            .is_some(),
        "demo passes are labelled"
    );
    h.get_by_label("Copy link");
    h.key_press(Key::Escape);
    h.run_steps(2);
    assert!(h.state().dialog().is_none(), "Esc closes the dialog");
    assert_eq!(
        h.state().member().map(|m| m.view.member.id),
        Some(view.member.id)
    );
}

#[test]
fn on_a_joined_till_the_wallet_pass_is_a_link_to_the_server() {
    use common::server::{Backend, Server, add_terminal, database};
    let dir = TempDb::new();
    let server_db = database(Backend::Sqlite, dir.dir.path()).expect("sqlite");
    let token = add_terminal(&server_db, "till");
    let server = Server::start(&server_db);
    let db = TempDb::new();
    join_store(&db, &server.url, &token);
    // Enrolled after the last sync: the server learns of the member when the link is asked.
    let (code, view) = store_with_member(&db, 100);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    h.get_by_label("Wallet pass").click();
    settle(&mut h);
    h.get_by_label("Wallet pass for Grace Hopper");
    h.get_by_label("The customer scans this code with the phone's camera.");
    assert!(
        h.query_by_label_contains("DEMO: the server signs with a test certificate")
            .is_some(),
        "a server without wallet keys says its passes will not install"
    );
    let Some(Dialog::Wallet(WalletDialog::Link { url, .. })) = h.state().dialog() else {
        panic!("the link dialog is open");
    };
    let url = url.replacen("https://", "http://", 1);
    assert!(
        !db.dir.path().join("exports").exists(),
        "a joined till signs nothing itself"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pass = reqwest::blocking::Client::new()
        .get(&url)
        .header(
            "User-Agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X)",
        )
        .send()
        .expect("the phone opens the link");
    assert_eq!(pass.status(), 200);
    assert_eq!(
        pass.headers()["content-type"],
        "application/vnd.apple.pkpass"
    );
    let bytes = pass.bytes().expect("body");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut json = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("pass.json").expect("pass.json"), &mut json)
        .expect("read");
    assert!(json.contains(view.member.card.as_str()), "{json}");
    h.key_press(Key::Escape);
    h.run_steps(2);
    assert!(h.state().dialog().is_none());
}

#[test]
fn the_status_bar_shows_sync_and_sales_reach_the_server() {
    use common::server::{Backend, Server, Till, add_terminal, database};
    let dir = TempDb::new();
    let server_db = database(Backend::Sqlite, dir.dir.path()).expect("sqlite");
    let (token, observer_token) = (
        add_terminal(&server_db, "till"),
        add_terminal(&server_db, "observer"),
    );
    let mut server = Server::start(&server_db);
    let db = TempDb::new();
    join_store(&db, &server.url, &token);
    let (code, view) = store_with_member(&db, 100);
    let mut h = harness(&db);
    h.state().settle_sync();
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("Online · nothing waiting")
            .is_some(),
        "{:?}",
        h.state().sync_status()
    );

    wedge(&mut h, &code);
    wedge(&mut h, "12.50");
    h.key_press(Key::F5);
    settle(&mut h);
    h.state().settle_sync();
    let observer = Till::join(&server.url, &observer_token);
    assert_eq!(
        observer.balances()[&view.member.id.0],
        225,
        "the sale reached the server"
    );

    server.kill();
    wedge(&mut h, "5.00");
    h.key_press(Key::F5);
    settle(&mut h);
    h.state().settle_sync();
    h.run_steps(2);
    let status = h.state().sync_status();
    assert!(!status.online, "{status:?}");
    assert!(
        h.query_by_label_contains("Offline · 1 change waiting")
            .is_some(),
        "{status:?}"
    );
    assert!(
        h.query_by_label_contains("cannot reach the server")
            .is_some(),
        "{status:?}"
    );
}

/// A card enrolled at another till since this one last pulled (or, on a till that just
/// joined a big chain, one whose history has not arrived yet) is looked up on the server: the
/// member comes with their history, shows with the server's balance and sells at once.
#[test]
fn a_card_this_till_has_not_pulled_yet_is_found_on_the_server() {
    use common::server::{Backend, Server, Till, add_terminal, database};
    let dir = TempDb::new();
    let server_db = database(Backend::Sqlite, dir.dir.path()).expect("sqlite");
    let (token, other_token) = (
        add_terminal(&server_db, "till"),
        add_terminal(&server_db, "other"),
    );
    let server = Server::start(&server_db);
    let db = TempDb::new();
    join_store(&db, &server.url, &token);
    let mut h = harness(&db);
    // The worker has had its round; the next is seconds away, and nothing here nudges it
    // before the scan.
    h.state().settle_sync();
    let mut other = Till::join(&server.url, &other_token);
    let member = enrol(&mut other.store, "Ada Lovelace").member.id;
    other
        .store
        .earn(member, 4_000, "test", common::server::now())
        .expect("earn");
    other.sync().expect("sync");
    let on_server = other.balances()[&member.0];
    let card = other.store.member(member).expect("member").member.card;
    let code = other.store.member_code(&card);

    wedge(&mut h, &code);
    settle(&mut h);
    settle(&mut h);
    assert_eq!(h.state().member().map(|m| m.view.member.id), Some(member));
    h.get_by_label(&format!("{on_server} points"));
    assert!(
        h.query_by_label_contains("Balance from the server")
            .is_none(),
        "their history came with them: this till's count is the server's"
    );
    assert_eq!(status_line(&h), "Ada Lovelace found");
    let terminal = Store::open(&db.path).expect("open").terminal_id().0.clone();
    h.get_by_label(&format!("{terminal} · 1 member"));

    wedge(&mut h, "12.50");
    h.key_press(Key::F5);
    settle(&mut h);
    settle(&mut h);
    h.get_by_label(&format!("{} points", on_server + 125));

    // The next round's pull finds their history here already, and the status bar still
    // counts one member.
    h.state().settle_sync();
    h.run_steps(2);
    settle(&mut h);
    settle(&mut h);
    h.get_by_label(&format!("{} points", on_server + 125));
    h.get_by_label(&format!("{terminal} · 1 member"));

    // A card no member holds is unknown on the server too.
    let nobody = Store::open(&db.path)
        .expect("open")
        .member_code(&tillpass::domain::CardNumber::from_payload(1));
    wedge(&mut h, &nobody);
    settle(&mut h);
    let message = status_line(&h);
    assert!(message.contains("here or on the server"), "{message}");
}

#[test]
fn enter_with_the_wallet_dialog_open_commits_no_sale() {
    let db = TempDb::new();
    let (mut h, before) = previewed_sale(&db);
    h.get_by_label("Wallet pass").click();
    settle(&mut h);
    h.get_by_label("Wallet pass for Grace Hopper");
    h.key_press(Key::Enter);
    settle(&mut h);
    assert_eq!(entries(&db), before, "Enter behind a dialog writes nothing");
}

#[test]
fn a_program_the_server_installs_reaches_the_screen_without_a_restart() {
    use common::server::{Backend, Server, add_terminal, admin, database};
    let dir = TempDb::new();
    let server_db = database(Backend::Sqlite, dir.dir.path()).expect("sqlite");
    let token = add_terminal(&server_db, "till");
    let server = Server::start(&server_db);
    let db = TempDb::new();
    join_store(&db, &server.url, &token);
    let mut h = harness(&db);
    h.state().settle_sync();
    settle(&mut h);
    h.get_by_label("Bean & Leaf Rewards");

    let renamed = dir.dir.path().join("renamed.toml");
    std::fs::write(
        &renamed,
        tillpass::domain::program::DEMO_PROGRAM_TOML
            .replace("Bean & Leaf Rewards", "Bean & Leaf Club")
            .replace("cost = 500", "cost = 450"),
    )
    .expect("write program");
    assert!(admin(
        &server_db,
        &["program", "set", renamed.to_str().expect("utf-8")]
    ));
    h.state().settle_sync();
    settle(&mut h);
    h.get_by_label("Bean & Leaf Club");
    assert!(
        h.query_by_label_contains("Bean & Leaf Rewards").is_none(),
        "the old name is gone"
    );
    assert_eq!(
        h.state()
            .program()
            .and_then(|p| p.reward("coffee"))
            .map(|r| r.cost),
        Some(450),
        "the cashier's rewards follow the new program"
    );
}

#[test]
fn scanning_a_join_code_joins_the_server() {
    use common::server::{Backend, Server, database};
    let dir = TempDb::new();
    let server_db = database(Backend::Sqlite, dir.dir.path()).expect("sqlite");
    let server = Server::start(&server_db);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tillpass-server"))
        .args([
            "--db",
            &server_db,
            "terminal",
            "add",
            "Front",
            "--url",
            &server.url,
        ])
        .output()
        .expect("terminal add");
    let printed = String::from_utf8_lossy(&out.stdout);
    let code = printed
        .lines()
        .find(|l| l.starts_with("TPJ1."))
        .expect("a join code")
        .to_owned();
    let db = TempDb::new();
    let mut h = harness(&db);
    h.query_by_label_contains("Not connected to a server")
        .expect("a till on its own");
    wedge(&mut h, &code);
    let message = status_line(&h);
    assert!(message.starts_with("Joined http://127.0.0.1"), "{message}");
    h.state().settle_sync();
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("Online · nothing waiting")
            .is_some(),
        "{:?}",
        h.state().sync_status()
    );

    // A damaged code says so and joins nothing.
    let db = TempDb::new();
    let mut h = harness(&db);
    wedge(&mut h, &code[..code.len() - 4]);
    let message = status_line(&h);
    assert!(message.contains("damaged"), "{message}");
    assert!(!h.state().sync_status().configured);
    assert!(
        matches!(h.state().dialog(), Some(Dialog::DemoOffer { .. })),
        "the offer stays open for another try"
    );
}

#[test]
fn the_manager_imports_members_from_a_file() {
    let db = TempDb::new();
    enrol(&mut db.open(), "Existing Member");
    db.open().set_manager_pin("9999").expect("pin");
    let good = db.dir.path().join("members.csv");
    std::fs::write(
        &good,
        "name,email,balance\nAda Lovelace,ada@example.com,1250\nBo Peep,,0\n",
    )
    .expect("write");
    let bad = db.dir.path().join("bad.csv");
    std::fs::write(&bad, "name,email,balance\nCy Young,cy@,10\n").expect("write");
    let mut h = harness(&db);
    h.key_press(Key::F10);
    h.run_steps(2);
    wedge(&mut h, "9999");
    settle(&mut h);
    for (file, expected) in [(&bad, "line 2: email"), (&good, "Imported 2 members")] {
        h.get_by_label("Import members from a file…").click();
        h.run_steps(2);
        field(&h, "CSV file").type_text(file.to_str().expect("path"));
        h.run_steps(1);
        h.key_press(Key::Enter);
        settle(&mut h);
        let message = status_line(&h);
        assert!(message.contains(expected), "{message}");
    }
    let store = db.open();
    assert_eq!(store.stats().expect("stats").members, 3);
    let ada = store
        .search("ada@example.com", 1)
        .expect("search")
        .pop()
        .expect("imported");
    assert_eq!(ada.view.state.balance, 1250);
}

#[test]
fn the_manager_sees_the_program_measures_with_their_formulas() {
    let db = TempDb::new();
    let mut store = db.open();
    tillpass::demo::seed(&mut store, 200, 5, NOW, |_| {}).expect("demo");
    store.set_manager_pin("9999").expect("pin");
    drop(store);
    let mut h = harness(&db);
    h.key_press(Key::F10);
    h.run_steps(2);
    wedge(&mut h, "9999");
    h.get_by_label("Insights").click();
    h.run_steps(2);
    assert!(h.state().manager().insights.computing, "asked the store");
    settle(&mut h);
    let report = h
        .state()
        .manager()
        .insights
        .report
        .clone()
        .unwrap_or_else(|| panic!("no report: {}", status_line(&h)));
    assert!(!h.state().manager().insights.computing);
    // What the screen shows is what the store computes for the same 90 days.
    let mut store = db.open();
    let (from, to) = (report.from, report.to);
    assert_eq!(to.millis() - from.millis(), 90 * 86_400_000);
    assert_eq!(store.insights(from, to).expect("report"), report);
    for m in &report.measures {
        h.get_by_label(m.name);
        h.get_by_label(&m.formula);
        h.get_all_by_label(&m.value_text(store.program()))
            .next()
            .unwrap_or_else(|| panic!("{} shows {}", m.name, m.value_text(store.program())));
    }
    h.get_by_label("Retention by enrolment month");
    // Another period asks again.
    h.get_by_label("12 months").click();
    h.run_steps(2);
    settle(&mut h);
    let year = h.state().manager().insights.report.clone().expect("report");
    assert_eq!(year.to.millis() - year.from.millis(), 365 * 86_400_000);
}

#[test]
fn f7_records_a_sale_without_a_member() {
    let db = TempDb::new();
    let (code, _) = store_with_member(&db, 100);
    let mut h = harness(&db);
    let guests = || {
        let mut store = Store::open(&db.path).expect("open");
        let (from, to) = tillpass::domain::insights::last_days(
            tillpass::domain::Timestamp::from(std::time::SystemTime::now()),
            1,
        );
        store
            .insights(from, to)
            .expect("report")
            .get("guest_orders")
            .expect("guests")
            .value
    };
    assert_eq!(guests(), Some(0.0));
    for c in "4.50".chars() {
        h.event(Event::Text(c.to_string()));
    }
    h.key_press(Key::F7);
    settle(&mut h);
    assert_eq!(
        status_line(&h),
        "Sale of 4.50 GBP recorded without a member (F8 undoes it)"
    );
    assert_eq!(guests(), Some(1.0));
    // Typed wrong: F8 right after undoes it, once, and the question for it goes.
    for c in "45.00".chars() {
        h.event(Event::Text(c.to_string()));
    }
    h.key_press(Key::F7);
    settle(&mut h);
    assert_eq!(guests(), Some(2.0));
    assert!(h.query_by_label("Ask: would they recommend us?").is_some());
    h.key_press(Key::F8);
    settle(&mut h);
    assert_eq!(status_line(&h), "Sale of 45.00 GBP without a member undone");
    assert_eq!(guests(), Some(1.0));
    assert!(h.query_by_label("Ask: would they recommend us?").is_none());
    h.key_press(Key::F8);
    settle(&mut h);
    assert_eq!(status_line(&h), "Scan a member first");
    assert_eq!(guests(), Some(1.0));
    // A scan in between (the next customer): F8 is no longer that sale's undo.
    for c in "2.00".chars() {
        h.event(Event::Text(c.to_string()));
    }
    h.key_press(Key::F7);
    settle(&mut h);
    wedge(&mut h, "Nobody");
    h.key_press(Key::F8);
    settle(&mut h);
    assert_eq!(status_line(&h), "Scan a member first");
    assert_eq!(guests(), Some(2.0));
    assert_eq!(
        entries(&db),
        1,
        "no ledger entry: only the welcome bonus is there"
    );
    // With a member on screen F7 refuses: that sale should earn.
    wedge(&mut h, &code);
    for c in "3.00".chars() {
        h.event(Event::Text(c.to_string()));
    }
    h.key_press(Key::F7);
    h.run_steps(2);
    assert!(
        status_line(&h).starts_with("A member is on screen"),
        "{}",
        status_line(&h)
    );
    assert_eq!(guests(), Some(2.0));
}

/// On a 1024 x 768 till screen, with the customer's question up after a sale, the sale keys
/// and the member's buttons stay whole inside their own column and above the status bar.
#[test]
fn on_a_small_screen_after_a_sale_the_sale_keys_and_member_buttons_stay_in_view() {
    let db = TempDb::new();
    let (code, _) = store_with_member(&db, 100);
    let mut h = harness_sized(&db, [1024.0, 768.0]);
    wedge(&mut h, &code);
    burst(&mut h, "12.50", Key::F5);
    settle(&mut h);
    assert!(h.state().cashier().ask.is_some(), "asked after the sale");
    let status_top = h.get_by_label(&status_line(&h)).rect().top();
    let sale_left = h.get_by_label("Sale").rect().left();
    let rewards_left = h.get_by_label("Rewards").rect().left();
    for (button, left, right) in [
        ("Earn  F5", sale_left, rewards_left),
        ("Reverse last  F8", sale_left, rewards_left),
        ("Enter", sale_left, rewards_left),
        ("Wallet pass", 0.0, sale_left),
        ("Give points", 0.0, sale_left),
    ] {
        let rect = h.get_by_label(button).rect();
        assert!(
            rect.bottom() <= status_top && rect.left() >= left && rect.right() <= right,
            "{button} at {rect:?}: its column is {left}..{right}, the status bar starts at {status_top}"
        );
    }
}

/// On a 1024 x 600 screen (a small till tablet) and at the window's smallest, 900 x 600, the
/// keys grow shorter so Enter, Earn and Reverse stay above the status bar with a sale
/// previewed, and still take a finger; the tabs keep to one row, and the member's own buttons
/// sit high enough to show too.
#[test]
fn on_a_short_screen_enter_earn_and_reverse_stay_in_view() {
    let db = TempDb::new();
    let (code, _) = store_with_member(&db, 100);
    for size in [[1024.0, 600.0], [900.0, 600.0]] {
        let mut h = harness_sized(&db, size);
        wedge(&mut h, &code);
        wedge(&mut h, "12.50");
        h.get_by_label_contains("earns 125 points");
        let status_top = h.get_by_label(&status_line(&h)).rect().top();
        let tabs_row = h.get_by_label("Cashier  F1").rect().top();
        assert_eq!(
            h.get_by_label("Customer display  F9").rect().top(),
            tabs_row,
            "one row of tabs at {size:?}"
        );
        for button in [
            "Enter",
            "Earn  F5",
            "Reverse last  F8",
            "7",
            "Del",
            "Wallet pass",
            "Give points",
        ] {
            let rect = h.get_by_label(button).rect();
            assert!(
                rect.bottom() <= status_top && rect.height() >= 32.0,
                "{button} at {rect:?} at {size:?}, the status bar starts at {status_top}"
            );
        }
        h.get_by_label("Earn  F5").click();
        settle(&mut h);
        assert_eq!(status_line(&h), "Earned 125 points on 12.50 GBP");
        // The question's row fits the width: Skip stays on screen (at 900 it ran off).
        let skip = h.get_by_label("Skip").rect();
        assert!(skip.right() <= size[0], "Skip at {skip:?} at {size:?}");
        // With the question up the sale's keys and Redeem stay above it: Reverse is wanted
        // just after a mistaken sale.
        for button in ["Enter", "Earn  F5", "Reverse last  F8", "Del", "Redeem  F6"] {
            let rect = h.get_by_label(button).rect();
            assert!(
                rect.bottom() <= skip.top() && rect.height() >= 32.0,
                "{button} at {rect:?} at {size:?} with the question up, its row starts at {}",
                skip.top()
            );
        }
    }
}

/// The recommend score given at the till today, if any.
fn nps_today(db: &TempDb) -> Option<f64> {
    let (from, to) = tillpass::domain::insights::last_days(
        tillpass::domain::Timestamp::from(std::time::SystemTime::now()),
        1,
    );
    let report = db.open().insights(from, to).expect("report");
    report.get("nps").and_then(|m| m.value)
}

/// On a short screen the customer's question comes where Earn was: the second tap of a double
/// tap on Earn landed on a score. Its answers take no tap in the moment it appears.
#[test]
fn a_tap_as_the_question_appears_records_no_score() {
    let db = TempDb::new();
    let (mut h, _) = previewed_sale(&db);
    h.key_press(Key::F5);
    h.run_steps(1);
    h.state_mut().settle();
    h.run_steps(1);
    h.get_by_label("Score 2").click();
    h.run_steps(1);
    h.state_mut().settle();
    h.run_steps(1);
    assert!(h.state().cashier().ask.is_some(), "still asking");
    assert_eq!(nps_today(&db), None, "no score from the tap");
    h.run_steps(2);
    h.get_by_label("Score 9").click();
    settle(&mut h);
    assert_eq!(nps_today(&db), Some(100.0));
}

/// Each member served opens at the top of their columns: a column scrolled down for the last
/// customer hid the next one's name, tier and points.
#[test]
fn the_next_member_opens_at_the_top_of_their_columns() {
    let db = TempDb::new();
    let (code, grace) = store_with_member(&db, 100);
    let other = {
        let mut store = db.open();
        for minutes in 0..8 {
            store
                .earn(grace.member.id, 450, "t", NOW.plus_millis(minutes * 60_000))
                .expect("a visit");
        }
        let ada = enrol(&mut store, "Ada Lovelace");
        store.member_code(&ada.member.card)
    };
    let mut h = harness_sized(&db, [1024.0, 600.0]);
    wedge(&mut h, &code);
    let name = h.get_by_label("Grace Hopper").rect();
    h.event(Event::PointerMoved(name.center()));
    h.event(Event::MouseWheel {
        unit: egui::MouseWheelUnit::Point,
        delta: egui::vec2(0.0, -400.0),
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Unknown,
        modifiers: egui::Modifiers::NONE,
    });
    h.run_steps(3);
    assert!(
        h.get_by_label("Grace Hopper").rect().top() < name.top(),
        "the column scrolled"
    );
    wedge(&mut h, &other);
    assert_eq!(h.get_by_label("Ada Lovelace").rect().top(), name.top());
}

#[test]
fn after_a_sale_the_customer_is_asked_and_may_answer_or_skip() {
    let db = TempDb::new();
    let (mut h, _) = previewed_sale(&db);
    h.key_press(Key::F5);
    settle(&mut h);
    assert!(h.state().cashier().ask.is_some(), "asked after the sale");
    h.get_by_label("Ask: would they recommend us?");
    h.get_by_label("Score 9").click();
    h.run_steps(2);
    settle(&mut h);
    assert_eq!(
        status_line(&h),
        "Thank you! Their answer, 9 out of 10, is recorded"
    );
    assert!(h.state().cashier().ask.is_none());
    let mut store = db.open();
    let (from, to) = tillpass::domain::insights::last_days(
        tillpass::domain::Timestamp::from(std::time::SystemTime::now()),
        1,
    );
    let report = store.insights(from, to).expect("report");
    assert_eq!(report.get("nps").and_then(|m| m.value), Some(100.0));
    drop(store);
    // A guest sale asks too; skipping records nothing, and the next sale is never held up.
    h.key_press(Key::Escape);
    h.run_steps(1);
    for c in "2.00".chars() {
        h.event(Event::Text(c.to_string()));
    }
    h.key_press(Key::F7);
    settle(&mut h);
    assert!(h.state().cashier().ask.is_some());
    h.get_by_label("Skip").click();
    h.run_steps(2);
    assert!(h.state().cashier().ask.is_none());
    let report = db.open().insights(from, to).expect("report");
    assert!(
        report
            .get("nps")
            .expect("nps")
            .formula
            .contains("of 1 answers")
    );
    // A guest who answers: the answer is kept with their sale.
    for c in "3.50".chars() {
        h.event(Event::Text(c.to_string()));
    }
    h.key_press(Key::F7);
    settle(&mut h);
    h.get_by_label("Score 6").click();
    h.run_steps(2);
    settle(&mut h);
    let store = db.open();
    let linked: i64 = store
        .connection()
        .query_row(
            "SELECT COUNT(*) FROM nps_answers a JOIN guest_sales s ON s.id = a.guest_sale
             WHERE a.score = 6 AND a.member_id IS NULL AND s.amount_minor = 350",
            [],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(linked, 1, "the guest's answer names their sale");
}

/// One HTTP/1.1 request to the till's integration API over a real socket, on a thread of its
/// own, while the test keeps drawing frames (the app answers from its frame): the status and
/// the JSON body.
fn pos_call(
    h: &mut Harness<'static, TillApp>,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    use std::io::{Read as _, Write as _};
    let addr = h.state().pos_addr().expect("the integration API runs");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let call = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    });
    while !call.is_finished() {
        h.run_steps(1);
        h.state_mut().settle();
    }
    let answer = call.join().expect("the call thread");
    settle(h);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let json = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .filter(|b| !b.is_empty())
        .map_or(serde_json::Value::Null, |b| {
            serde_json::from_str(b).expect("a JSON body")
        });
    (status, json)
}

/// The app with its integration API on a free loopback port.
fn pos_harness(db: &TempDb) -> Harness<'static, TillApp> {
    let path = db.path.clone();
    let exports = db.dir.path().join("exports");
    let mut h = Harness::builder()
        .with_size([1280.0, 760.0])
        .build_eframe(move |cc| {
            TillApp::new(&cc.egui_ctx, path, exports, "kittest".into())
                .serve_pos("127.0.0.1:0".parse().expect("addr"))
        });
    settle(&mut h);
    h
}

#[test]
fn the_point_of_sale_attaches_a_basket_the_cashier_sees_explained_and_commits_it() {
    let db = TempDb::new();
    let (code, view) = store_with_member(&db, 100);
    let mut h = pos_harness(&db);
    let token = db.open().pos_token().expect("token");

    let (status, body) = pos_call(&mut h, &token, "GET", "/v1/member", "");
    assert_eq!((status, body["error"].as_str().is_some()), (404, true));
    wedge(&mut h, &code);
    let (status, body) = pos_call(&mut h, &token, "GET", "/v1/member", "");
    assert_eq!(status, 200);
    assert_eq!(body["name"], "Grace Hopper");
    assert_eq!(body["card"], view.member.card.to_string());
    assert_eq!(
        (body["tier"].as_str(), body["balance"].as_i64()),
        (Some("Green"), Some(100))
    );
    assert_eq!(
        (&body["offers"], &body["stamps"], &body["badges"]),
        (
            &serde_json::json!([]),
            &serde_json::json!({}),
            &serde_json::json!([])
        ),
        "nothing open, held or awarded yet"
    );

    // Two lattes, a bag of beans and a gift card: 30.40 GBP earns (gift cards excluded) 304
    // base, beans x2 adds 240, and 24.00 on beans takes the 100-point bonus.
    let basket = r#"{"lines": [
        {"code": "LAT", "name": "Latte", "category": "coffee", "quantity": 2, "amount_minor": 640},
        {"name": "House beans 250g", "category": "beans", "amount_minor": 2400},
        {"name": "Gift card", "category": "gift-card", "amount_minor": 2000}]}"#;
    let (status, quote) = pos_call(&mut h, &token, "POST", "/v1/basket", basket);
    assert_eq!(status, 200, "{quote}");
    assert_eq!(
        (quote["amount_minor"].as_i64(), quote["points"].as_i64()),
        (Some(5040), Some(644))
    );
    let steps: Vec<&str> = quote["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["text"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "304 base on 30.40 GBP",
            "gift-card earn nothing",
            "+240 beans ×2",
            "+2 Coffee card stamps: 2 of 9",
            "+100 Spend 20 on beans, get 100 points"
        ]
    );
    // The cashier sees the same explanation and the lines, with nothing written yet.
    h.get_by_label("earns 644 points");
    h.get_by_label("+240 beans ×2");
    h.get_by_label("+2 Coffee card stamps: 2 of 9");
    h.get_by_label("2 × Latte");
    let before = entries(&db);

    let (status, body) = pos_call(&mut h, &token, "POST", "/v1/basket/commit", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["points"].as_i64(), body["balance"].as_i64()),
        (Some(644), Some(744))
    );
    assert_eq!(entries(&db), before + 1);
    h.get_by_label("744 points");
    h.get_by_label("Coffee card: 2 of 9 stamps");
    let store = db.open();
    let sale = store
        .last_local_entry(view.member.id)
        .expect("read")
        .expect("the sale");
    assert_eq!(
        (sale.points, sale.amount_minor, sale.lines.len()),
        (644, Some(5040), 3)
    );

    let (status, _) = pos_call(&mut h, &token, "POST", "/v1/basket/commit", "");
    assert_eq!(status, 409, "a basket is committed once");
    let bad = r#"{"lines": [{"name": "Latte", "quantity": 0, "amount_minor": 320}]}"#;
    let (status, body) = pos_call(&mut h, &token, "POST", "/v1/basket", bad);
    assert_eq!(status, 422);
    assert_eq!(
        body["error"],
        "basket line 1: the quantity must be 1 to 9999"
    );
    let (status, _) = pos_call(&mut h, "not-the-token", "GET", "/v1/member", "");
    assert_eq!(status, 401);
    assert_eq!(entries(&db), before + 1, "refused calls write nothing");
}

#[test]
fn a_full_stamp_card_shows_as_stamps_and_buys_the_free_coffee() {
    let db = TempDb::new();
    let (code, view) = store_with_member(&db, 100);
    let nine = [SaleLine::item("Latte", "coffee", 9, 2_880)];
    db.open()
        .earn_sale(view.member.id, Sale::Lines(&nine), "test", NOW)
        .expect("nine lattes");
    let mut h = harness(&db);
    wedge(&mut h, &code);
    h.get_by_label("Coffee card: 9 of 9 stamps");
    h.get_by_label("9 of 9");
    h.get_by_label("Free coffee  ·  Coffee card\ncard full: free")
        .click();
    settle(&mut h);
    let message = status_line(&h);
    assert!(
        message.contains("Free coffee: a full stamp card spent"),
        "{message}"
    );
    h.get_by_label("Coffee card: 0 of 9 stamps");
    h.get_by_label("0 of 9");
    let held = db.open().stamps_held(view.member.id).expect("stamps");
    assert!(held.is_empty(), "{held:?}");
    // An empty card buys nothing: the button is there, greyed, saying what is missing.
    h.get_by_label("Free coffee  ·  Coffee card\n9 more stamps");
}

#[test]
fn a_member_gives_points_to_a_cause_and_the_manager_sees_the_total() {
    let db = TempDb::new();
    let (code, _) = store_with_member(&db, 800);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    h.get_by_label("Give points").click();
    h.run_steps(2);
    h.get_by_label("The member has 800 points to spend.");
    h.get_by_label("Hill Street School garden").click();
    h.run_steps(1);
    // Too many digits for any balance: said so, not "type a whole number".
    let huge = "99999999999999999999";
    field(&h, "Points to give").type_text(huge);
    h.run_steps(1);
    h.get_by_label("Give").click();
    h.run_steps(2);
    h.get_by_label_contains("is more points than the member has");
    for _ in 0..huge.len() {
        h.key_press(Key::Backspace);
        h.run_steps(1);
    }
    field(&h, "Points to give").type_text("900");
    h.run_steps(1);
    h.get_by_label("Give").click();
    settle(&mut h);
    // Refused in the prompt, which stays open with what was typed, to be put right.
    h.get_by_label_contains("not enough points");
    assert_eq!(db.open().cause_totals().expect("totals"), vec![]);
    for _ in 0.."900".len() {
        h.key_press(Key::Backspace);
        h.run_steps(1);
    }
    field(&h, "Points to give").type_text("300");
    h.run_steps(1);
    h.key_press(Key::Enter);
    settle(&mut h);
    let message = status_line(&h);
    assert!(
        message.contains("Gave 300 points to Hill Street School garden"),
        "{message}"
    );
    h.get_by_label("500 points");
    let totals = db.open().cause_totals().expect("totals");
    assert_eq!(
        (totals[0].cause.as_str(), totals[0].points, totals[0].gifts),
        ("school-garden", 300, 1)
    );
}

#[test]
fn the_fifth_visit_unlocks_the_offer_the_cashier_then_uses() {
    let db = TempDb::new();
    let (code, view) = store_with_member(&db, 100);
    {
        let mut store = db.open();
        let now = tillpass::domain::Timestamp::from(std::time::SystemTime::now());
        for i in 0..4 {
            store
                .earn(
                    view.member.id,
                    300,
                    "test",
                    now.plus_days(-1).plus_millis(i),
                )
                .expect("a visit");
        }
    }
    let mut h = pos_harness(&db);
    wedge(&mut h, &code);
    h.get_by_label("A free pastry: 4 of 5 visits");
    wedge(&mut h, "3.00");
    h.key_press(Key::F5);
    settle(&mut h);
    // The offer shows on the panel; "Last visits" keeps to what the customer did.
    assert!(h.query_all_by_label("Purchase").count() >= 5);
    assert!(h.query_by_label("Offer unlocked").is_none());
    // The point of sale sees the offer too, to add its reward line.
    let token = db.open().pos_token().expect("token");
    let (_, member) = pos_call(&mut h, &token, "GET", "/v1/member", "");
    assert_eq!(member["offers"][0]["name"], "A free pastry", "{member}");
    h.get_by_label_contains("Offer: A free pastry").click();
    settle(&mut h);
    let message = status_line(&h);
    assert!(message.contains("A free pastry: used"), "{message}");
    h.get_by_label("A free pastry: 0 of 5 visits");
}

#[test]
fn visits_made_at_tills_apart_unlock_the_offer_at_the_next_sale() {
    let db = TempDb::new();
    let (code, view) = store_with_member(&db, 100);
    {
        let mut store = db.open();
        let now = tillpass::domain::Timestamp::from(std::time::SystemTime::now());
        let here = store
            .earn(view.member.id, 300, "test", now.plus_days(-2))
            .expect("a visit here");
        // Five more at another till, offline: neither till saw five in a row.
        let elsewhere: Vec<_> = (0..5)
            .map(|i| tillpass::domain::Entry {
                id: tillpass::domain::EntryId(uuid::Uuid::now_v7()),
                terminal_id: tillpass::domain::TerminalId("till-elsewhere".into()),
                terminal_seq: i + 1,
                occurred_at: now.plus_days(-1).plus_millis(i),
                ..here.clone()
            })
            .collect();
        store.insert_entries(&elsewhere).expect("their visits");
    }
    let mut h = pos_harness(&db);
    wedge(&mut h, &code);
    h.get_by_label("A free pastry: unlocks with the next purchase");
    wedge(&mut h, "3.00");
    h.key_press(Key::F5);
    settle(&mut h);
    h.get_by_label_contains("Offer: A free pastry");
}

#[test]
fn a_member_back_after_sixty_days_is_offered_a_welcome_back_coffee_on_scan() {
    let db = TempDb::new();
    let (code, view) = store_with_member(&db, 100);
    let now = tillpass::domain::Timestamp::from(std::time::SystemTime::now());
    db.open()
        .earn(view.member.id, 450, "test", now.plus_days(-61))
        .expect("a sale two months ago");
    let mut h = harness(&db);
    wedge(&mut h, &code);
    h.get_by_label_contains("Offer: A coffee on us: welcome back")
        .click();
    settle(&mut h);
    let message = status_line(&h);
    assert!(
        message.contains("A coffee on us: welcome back: used"),
        "{message}"
    );
    let store = db.open();
    assert_eq!(store.reengagement_results().expect("results"), (1, 0));
    // Scanned again, nothing more is given: one offer per absence.
    drop(store);
    wedge(&mut h, &code);
    assert!(h.query_by_label_contains("Offer: A coffee on us").is_none());
}

#[test]
fn a_gold_membership_sold_at_the_till_makes_the_member_gold_for_a_year() {
    let db = TempDb::new();
    let (code, view) = store_with_member(&db, 100);
    let mut h = harness(&db);
    wedge(&mut h, &code);
    h.get_by_label("Sell Gold membership  ·  25.00 GBP\n365 days of Gold benefits")
        .click();
    settle(&mut h);
    let message = status_line(&h);
    assert!(
        message.contains("Gold membership sold for 25.00 GBP, until"),
        "{message}"
    );
    h.get_by_label_contains("Gold membership until");
    // A year ahead there is nothing to renew: a second tap must not sell a second year.
    assert!(h.query_by_label_contains("Renew Gold membership").is_none());
    assert!(h.query_by_label_contains("Sell Gold membership").is_none());
    let store = db.open();
    let now = tillpass::domain::Timestamp::from(std::time::SystemTime::now());
    let state = store.summary_at(view.member.id, now).expect("summary");
    assert_eq!(
        (state.tier, state.balance),
        (2, 100),
        "Gold, and the fee earned nothing"
    );
}

#[test]
fn a_friend_enrolled_as_referred_brings_both_their_bonus_with_the_first_purchase() {
    let db = TempDb::new();
    let (ada_code, ada) = store_with_member(&db, 100);
    db.open().set_manager_pin("2468").expect("pin");
    let mut h = harness(&db);
    h.key_press(Key::F2);
    h.run_steps(2);
    fill(&mut h, "Name", "Bob Byron");
    fill(&mut h, "Referred by", "4242 4242 4242");
    h.run_steps(1);
    h.get_by_label("Enrol member").click();
    settle(&mut h);
    let message = status_line(&h);
    assert!(message.starts_with("Referred by:"), "{message}");
    assert_eq!(
        db.open().stats().expect("stats").members,
        1,
        "nobody enrolled"
    );

    field(&h, "Referred by").click();
    h.run_steps(1);
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::A);
    field(&h, "Referred by").type_text(ada.member.card.as_str());
    h.run_steps(1);
    h.get_by_label("Enrol member").click();
    settle(&mut h);
    h.get_by_label("Welcome, Bob Byron");
    h.get_by_label("Serve this member  F1").click();
    settle(&mut h);
    wedge(&mut h, "6.00");
    h.key_press(Key::F5);
    settle(&mut h);
    let message = status_line(&h);
    assert!(
        message.contains("referral bonus +100") && message.contains("Grace Hopper +200"),
        "{message}"
    );
    h.get_by_label("Referred by Grace Hopper");
    wedge(&mut h, &ada_code);
    h.get_by_label("Friends referred this year: 1 of 10");
    let store = db.open();
    assert_eq!(store.member(ada.member.id).expect("ada").state.balance, 300);

    // The friend's purchase reversed: the bonuses go with it, and the message says so.
    drop(store);
    wedge(&mut h, "Bob Byron");
    wedge(&mut h, "");
    h.key_press(Key::F8);
    h.run_steps(2);
    wedge(&mut h, "2468");
    let message = status_line(&h);
    assert!(
        message.starts_with("Reversed the last purchase (-60 points); the offers, badges and bonuses it brought are taken back too (-100 points, and -200 from the member who referred them)"),
        "{message}"
    );
    assert_eq!(
        db.open().member(ada.member.id).expect("ada").state.balance,
        100
    );
}

#[test]
fn the_tenth_visit_awards_the_regular_badge_the_panel_shows() {
    let db = TempDb::new();
    let (code, view) = store_with_member(&db, 100);
    {
        let mut store = db.open();
        let now = tillpass::domain::Timestamp::from(std::time::SystemTime::now());
        for i in 0..9 {
            store
                .earn(
                    view.member.id,
                    300,
                    "test",
                    now.plus_days(-3).plus_millis(i),
                )
                .expect("a visit");
        }
    }
    let mut h = harness(&db);
    wedge(&mut h, &code);
    assert!(
        h.query_by_label_contains("Badges:").is_none(),
        "no badge before the tenth visit"
    );
    wedge(&mut h, "3.00");
    h.key_press(Key::F5);
    settle(&mut h);
    let message = status_line(&h);
    assert!(message.contains("Regular badge +100"), "{message}");
    h.get_by_label("Badges: Regular");
    assert_eq!(
        db.open().badges(view.member.id).expect("badges"),
        ["regular"]
    );
}
