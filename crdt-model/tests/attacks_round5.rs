//! Fifth review round: attacks on commit 8018b0d (blame isolation of released waiting changes,
//! the actor's previous number in readiness, `rounds`, claimants of one (actor, number), the
//! rotating `need`). Every test asserts the secure behaviour: a failing test is a break.

use std::time::Instant;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, ROOT};
use linli_crdt_model::document::{ChangeSignature, Document};
use linli_crdt_model::kinds;
use linli_crdt_model::testkit::forge::{
    Item, assert_every_change_signed, batch, h, raw_as, reasons, recraft,
};
use linli_crdt_model::testkit::{DAY, Net, T0, actor_of, visit};

fn assign(id: &str) -> impl FnOnce(&mut AutoCommit) {
    let id = id.to_owned();
    move |tx: &mut AutoCommit| {
        kinds::visits::assign(
            tx,
            &id,
            &kinds::visits::Assignment {
                worker: "王芳".to_owned(),
                household_name: format!("住户{id}"),
                kind: kinds::visits::HouseholdKind::Household,
                grid: Some("一网格".to_owned()),
                address: "胜利路9号".to_owned(),
            },
        )
        .unwrap();
    }
}

fn entry(id: &str) -> impl FnOnce(&mut AutoCommit) {
    let id = id.to_owned();
    move |tx: &mut AutoCommit| {
        kinds::visits::add_entry(tx, &id, &visit("h1", "王芳", "2026-11-03", T0)).unwrap();
    }
}

/// A valid month that makes every 2026-11 entry "outside the log's month": valid alone
/// while the log has no entries, invalid together with any honest entry.
fn other_month(tx: &mut AutoCommit) {
    tx.put(ROOT, "month", "2026-12").unwrap();
}

// =============================================================================================
// (a) "if none fails alone, the batch is refused": a released crafted change that fails only
// together with a fresh honest change built on a released honest change.
// =============================================================================================

/// 王芳's H (an assignment), W (an assignment on H) and F (an entry on W). 李强 signs R on H:
/// the month becomes "2026-12" — valid while the log has no entries. A victim holds W and R
/// waiting for H (a Bloom false positive, or R sent ahead on purpose). An honest relay sends
/// H and F: the whole fails (F's entry is outside R's month); without the released W, R and
/// what builds on them (F) it passes; adding W passes; adding R passes (no entry yet). Nothing
/// failed alone, so the honest relay's batch is refused — and every retry is refused the same
/// way, because R keeps waiting. 王芳's H and F never enter while the reference takes them.
#[test]
fn a_released_poison_that_fails_only_with_a_tainted_honest_change_does_not_refuse_the_batch() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let ctx = net.ctx(T0 + DAY);
    let mut relay = doc.clone();
    let hh = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 10,
        assign("h7"),
    );
    relay.ingest(&ctx, batch(&[&hh])).unwrap();
    let mut attacker = relay.clone();
    let w = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 11,
        assign("h8"),
    );
    relay.ingest(&ctx, batch(&[&w])).unwrap();
    let f = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 12,
        entry("v-f"),
    );
    relay.ingest(&ctx, batch(&[&f])).unwrap();
    let r = raw_as(
        &net,
        &mut attacker,
        actor_of(&net.c_li, 1),
        &net.c_li,
        T0 + 13,
        other_month,
    );
    // R alone on H is accepted by an honest node: it is not the sender's fault to relay it.
    attacker
        .ingest(&ctx, batch(&[&r]))
        .expect("R is valid alone");

    // The reference: the honest history first; R then fails (its sender's fault).
    let mut reference = doc.clone();
    reference.ingest(&ctx, batch(&[&hh, &w, &f])).unwrap();
    assert!(reference.has_change(&h(&f)));

    let mut victim = doc.clone();
    victim.ingest(&ctx, batch(&[&w])).unwrap();
    victim.ingest(&ctx, batch(&[&r])).unwrap();
    assert_eq!(victim.n_deferred(), 2, "precondition: W and R wait for H");
    let got = victim.ingest(&ctx, batch(&[&hh, &f]));
    assert!(
        got.is_ok(),
        "王芳's honest batch [H, F] was refused because 李强's R was released beside it: {:?}",
        got.map(|a| reasons(&a))
    );
    assert!(victim.has_change(&h(&hh)) && victim.has_change(&h(&f)) && victim.has_change(&h(&w)));
    assert!(!victim.has_change(&h(&r)));
    assert_every_change_signed(&mut victim, "after release");
}

/// The same, retried: an honest relay that keeps sending H and F never gets them in.
#[test]
fn a_waiting_poison_cannot_block_an_honest_dependency_for_ever() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let ctx = net.ctx(T0 + DAY);
    let mut relay = doc.clone();
    let hh = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 10,
        assign("h7"),
    );
    relay.ingest(&ctx, batch(&[&hh])).unwrap();
    let mut attacker = relay.clone();
    let w = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 11,
        assign("h8"),
    );
    relay.ingest(&ctx, batch(&[&w])).unwrap();
    let f = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 12,
        entry("v-f"),
    );
    let r = raw_as(
        &net,
        &mut attacker,
        actor_of(&net.c_li, 1),
        &net.c_li,
        T0 + 13,
        other_month,
    );

    let mut victim = doc.clone();
    victim.ingest(&ctx, batch(&[&w])).unwrap();
    victim.ingest(&ctx, batch(&[&r])).unwrap();
    let mut refusals = Vec::new();
    for _ in 0..3 {
        match victim.ingest(&ctx, batch(&[&hh, &w, &f])) {
            Ok(_) => break,
            Err(e) => refusals.push(e.reason()),
        }
    }
    // H alone (without F) is the only way in, and then F must follow.
    assert!(
        refusals.is_empty(),
        "the honest relay's [H, W, F] was refused {} times in a row: {refusals:?}",
        refusals.len()
    );
}

/// Two released crafted changes by 李强 that pass alone and fail only together (R1 sets the
/// month, R2 adds an entry of 2026-11) while the batch is honest: the cumulative isolation
/// must set one aside, not refuse 王芳's batch.
#[test]
fn two_released_poisons_failing_only_together_do_not_refuse_an_honest_batch() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let ctx = net.ctx(T0 + DAY);
    let mut relay = doc.clone();
    let hh = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 10,
        assign("h7"),
    );
    relay.ingest(&ctx, batch(&[&hh])).unwrap();
    let mut a1 = relay.clone();
    let mut a2 = relay.clone();
    let r1 = raw_as(
        &net,
        &mut a1,
        actor_of(&net.c_li, 1),
        &net.c_li,
        T0 + 13,
        other_month,
    );
    let r2 = raw_as(
        &net,
        &mut a2,
        actor_of(&net.c_li, 2),
        &net.c_li,
        T0 + 14,
        entry("v-r2"),
    );
    let g = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 15,
        assign("h9"),
    );

    let mut victim = doc.clone();
    victim.ingest(&ctx, batch(&[&r1, &r2])).unwrap();
    assert_eq!(victim.n_deferred(), 2);
    let got = victim.ingest(&ctx, batch(&[&hh, &g]));
    assert!(
        got.is_ok(),
        "honest [H, G] refused: {:?}",
        got.map(|a| reasons(&a))
    );
    assert!(victim.has_change(&h(&hh)) && victim.has_change(&h(&g)));
    let in_r1 = victim.has_change(&h(&r1));
    let in_r2 = victim.has_change(&h(&r2));
    assert!(!(in_r1 && in_r2), "both halves of the poison entered");
    assert_every_change_signed(&mut victim, "two poisons");
}

// =============================================================================================
// Panics and numbers: seq 0, seq u64::MAX, gaps, two claimants of the previous number.
// =============================================================================================

fn li_change(
    net: &Net,
    doc: &mut Document,
    n: u8,
    at: i64,
    f: impl FnOnce(&mut AutoCommit),
) -> Item {
    raw_as(net, doc, actor_of(&net.c_li, n), &net.c_li, at, f)
}

#[test]
fn odd_numbers_neither_panic_nor_enter() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let ctx = net.ctx(T0 + DAY);
    let mut base = doc.clone();
    let c = li_change(&net, &mut base, 1, T0 + 10, entry("v-odd"));
    for seq in [0u64, 2, 3, u64::MAX - 1, u64::MAX] {
        let forged = recraft(&net, &doc, &c.0, &net.c_li, |e| e.seq = seq);
        let mut victim = doc.clone();
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            victim.ingest(&ctx, batch(&[&forged])).map(|a| reasons(&a))
        }));
        assert!(got.is_ok(), "seq {seq}: ingest panicked");
        assert!(
            !victim.has_change(&h(&forged)),
            "seq {seq}: a change with a gap entered"
        );
        // And again with the honest seq 1 alongside, in both orders.
        for order in [[&c, &forged], [&forged, &c]] {
            let mut v = doc.clone();
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                v.ingest(&ctx, batch(&order)).map(|a| reasons(&a))
            }));
            assert!(got.is_ok(), "seq {seq} with seq 1: ingest panicked");
            assert_every_change_signed(&mut v, "odd numbers");
        }
    }
}

/// Two claimants of number 1 (X on the heads, X' on the heads), and number 2 (Y) built on X'
/// only. In any batch order the node must not panic, must apply one of X/X', and Y enters
/// exactly when X' is the held one (now or at the next ingest).
#[test]
fn claimants_of_the_previous_number_in_any_order() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let ctx = net.ctx(T0 + DAY);
    let a = actor_of(&net.c_li, 1);
    let mut d1 = doc.clone();
    let x = raw_as(&net, &mut d1, a.clone(), &net.c_li, T0 + 10, assign("h7"));
    let mut d2 = doc.clone();
    let x2 = raw_as(&net, &mut d2, a.clone(), &net.c_li, T0 + 11, assign("h8"));
    d2.ingest(&ctx, batch(&[&x2])).unwrap();
    let y = raw_as(&net, &mut d2, a.clone(), &net.c_li, T0 + 12, assign("h9"));
    assert_eq!(y.0.seq(), 2);
    let items = [&x, &x2, &y];
    let perms: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for p in perms {
        let mut v = doc.clone();
        let b: Vec<&Item> = p.iter().map(|&i| items[i]).collect();
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            v.ingest(&ctx, batch(&b)).map(|a| reasons(&a))
        }));
        let got = got.unwrap_or_else(|_| panic!("order {p:?}: panicked"));
        assert!(got.is_ok(), "order {p:?}: refused {got:?}");
        assert!(
            v.has_change(&h(&x)) ^ v.has_change(&h(&x2)),
            "order {p:?}: {got:?}"
        );
        // Settle: what waits gets another chance.
        let _ = v.ingest(&ctx, batch(&[&x2, &y]));
        if v.has_change(&h(&x2)) {
            assert!(
                v.has_change(&h(&y)),
                "order {p:?}: Y on the held X' never entered"
            );
        } else {
            assert!(!v.has_change(&h(&y)));
        }
        assert_every_change_signed(&mut v, "claimants");
    }
}

/// Y (number 2) whose explicit dependency is X (number 1), and Z (number 3) whose dependencies
/// skip Y: rounds must put Z after Y. A cycle through the implicit edge: X' (number 1) depends
/// on Y (number 2). Nothing may panic, nothing unsigned may enter.
#[test]
fn implicit_predecessor_edges_and_cycles_do_not_panic() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let ctx = net.ctx(T0 + DAY);
    let a = actor_of(&net.c_li, 1);
    let mut d = doc.clone();
    let heads = d.heads();
    let x = raw_as(&net, &mut d, a.clone(), &net.c_li, T0 + 10, assign("h7"));
    d.ingest(&ctx, batch(&[&x])).unwrap();
    let y = raw_as(&net, &mut d, a.clone(), &net.c_li, T0 + 11, assign("h8"));
    d.ingest(&ctx, batch(&[&y])).unwrap();
    let z = raw_as(&net, &mut d, a.clone(), &net.c_li, T0 + 12, assign("h9"));
    let z_skip = recraft(&net, &doc, &z.0, &net.c_li, |e| e.deps = heads.clone());
    let y_skip = recraft(&net, &doc, &y.0, &net.c_li, |e| e.deps = heads.clone());
    // X'' number 1 depending on Y: a cycle X'' -> Y -> (implicit) number 1.
    let x_cyc = recraft(&net, &doc, &x.0, &net.c_li, |e| e.deps = vec![y.0.hash()]);
    let all = [&x, &y, &z, &z_skip, &y_skip, &x_cyc];
    let mut seed = 7u64;
    for round in 0..40 {
        let mut idx: Vec<usize> = (0..all.len()).collect();
        for i in (1..idx.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            idx.swap(i, (seed >> 33) as usize % (i + 1));
        }
        let k = 1 + round % all.len();
        let mut v = doc.clone();
        let first: Vec<&Item> = idx[..k].iter().map(|&i| all[i]).collect();
        let rest: Vec<&Item> = idx[k..].iter().map(|&i| all[i]).collect();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = v.ingest(&ctx, batch(&first));
            let _ = v.ingest(&ctx, batch(&rest));
        }));
        assert!(r.is_ok(), "order {idx:?} split {k}: panicked");
        assert_every_change_signed(&mut v, "implicit edges");
    }
}

// =============================================================================================
// Cost: the isolation loop and rounds (printed, not asserted).
// =============================================================================================

#[test]
fn cost_of_isolation_with_many_released() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let ctx = net.ctx(T0 + DAY);
    let mut relay = doc.clone();
    let hh = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 10,
        assign("h7"),
    );
    relay.ingest(&ctx, batch(&[&hh])).unwrap();
    for n in [10usize, 40] {
        let mut victim = doc.clone();
        let mut items = Vec::new();
        for i in 0..n {
            let mut a = relay.clone();
            let it = if i % 2 == 0 {
                raw_as(
                    &net,
                    &mut a,
                    actor_of(&net.c_li, (i + 1) as u8),
                    &net.c_li,
                    T0 + 20,
                    other_month,
                )
            } else {
                raw_as(
                    &net,
                    &mut a,
                    actor_of(&net.c_li, (i + 1) as u8),
                    &net.c_li,
                    T0 + 20,
                    entry(&format!("e{i}")),
                )
            };
            items.push(it);
        }
        let refs: Vec<&Item> = items.iter().collect();
        victim.ingest(&ctx, batch(&refs)).unwrap();
        let t = Instant::now();
        let got = victim.ingest(&ctx, batch(&[&hh]));
        println!(
            "{n} released poisons: {:?}, ok={}, set aside {}",
            t.elapsed(),
            got.is_ok(),
            got.as_ref().map(|a| a.set_aside.len()).unwrap_or(0)
        );
    }
}

/// `rounds` used to keep, per position, a map of every actor among its ancestors: a chain of n
/// changes, each under a fresh incarnation of one author (actors are free), cost n²/2 map
/// entries (1,000 changes: 533 ms in `rounds` alone). It now searches only for each change's
/// own predecessor, within a bound. The chain is taken whole; the time is printed, not
/// asserted.
#[test]
fn cost_of_rounds_with_a_chain_of_fresh_actors() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let ctx = net.ctx(T0 + DAY);
    for (n, fresh_actors) in [(500usize, true), (1000, true), (1000, false)] {
        let mut d = doc.clone();
        let heads = d.heads();
        let mut copy: AutoCommit = d.at(&heads).unwrap();
        let mut items = Vec::with_capacity(n);
        for i in 0..n {
            copy.set_actor(linli_crdt_model::document::actor_for(
                &net.c_li.public(),
                &(900_000 + if fresh_actors { i as u64 } else { 0 }).to_le_bytes(),
            ));
            copy.put(ROOT, "x", i as i64).ok();
            kinds::visits::assign(
                &mut copy,
                &format!("c{}", i % 4),
                &kinds::visits::Assignment {
                    worker: "李强".to_owned(),
                    household_name: "x".to_owned(),
                    kind: kinds::visits::HouseholdKind::Household,
                    grid: None,
                    address: "y".to_owned(),
                },
            )
            .unwrap();
            copy.delete(ROOT, "x").ok();
            copy.commit_with(CommitOptions::default().with_time(T0 + 10));
            let c = copy.get_last_local_change().unwrap().clone();
            let sig = ChangeSignature::sign(net.trust.network(), d.id(), c.hash(), &net.c_li);
            items.push((c, sig));
        }
        let refs: Vec<&Item> = items.iter().collect();
        let t = Instant::now();
        let got = d
            .ingest(&ctx, batch(&refs))
            .expect("an honest chain is taken");
        println!(
            "chain of {n} (fresh actors: {fresh_actors}): {:?}",
            t.elapsed()
        );
        assert_eq!(got.new.len(), n, "{:?}", got.set_aside.first());
    }
}
