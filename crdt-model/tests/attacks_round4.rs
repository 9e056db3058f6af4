//! Fourth review round: attacks on the document's own queue of changes waiting for a dependency
//! (`Waiting`, the pool of `candidate`, `Unappliable`, `lost`, the sync message's `need`).
//! Every test asserts the secure behaviour, so a test that fails demonstrates a break; the
//! others are attacks that held, kept as regressions.

use std::time::{Duration, Instant};

use automerge::sync::BloomFilter;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, Change, ChangeHash, ROOT};
use linli_crdt_model::document::{
    ACTOR_INCARNATION_BYTES, Applied, ChangeSignature, Document, actor_for,
};
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::kinds;
use linli_crdt_model::testkit::forge::{
    Item, assert_every_change_signed, batch, forge_as, h, raw_as, reasons, recraft,
};
use linli_crdt_model::testkit::{
    DAY, Net, T0, actor, actor_of, key, permutations, revocation, visit,
};

// =============================================================================================
// Helpers (after set_aside.rs and attacks_round3.rs).
// =============================================================================================

/// A visit entry made on a raw Automerge copy (which may hold changes no document holds).
fn entry_on(
    net: &Net,
    doc: &Document,
    copy: &mut AutoCommit,
    a: ActorId,
    signer: &SecretKey,
    at_ms: i64,
    id: &str,
) -> Item {
    copy.set_actor(a);
    kinds::visits::add_entry(copy, id, &visit("h1", "王芳", "2026-11-03", T0))
        .expect("valid visit");
    copy.commit_with(CommitOptions::default().with_time(at_ms));
    let change = copy.get_last_local_change().expect("a change").clone();
    let sig = ChangeSignature::sign(net.trust.network(), doc.id(), change.hash(), signer);
    (change, sig)
}

fn reason_of(applied: &Applied, change: ChangeHash) -> Option<&'static str> {
    applied
        .set_aside
        .iter()
        .find(|s| s.change == change)
        .map(|s| s.reason.reason())
}

/// Revoke 李强 in 胜利社区 from `cutoff`.
fn revoke_li(net: &mut Net, cutoff: i64) {
    let rev = revocation(
        &net.trust,
        &net.c_admin,
        &net.c_li.public(),
        &net.shengli.id,
        T0 + 20,
        cutoff,
        true,
        "离职",
    );
    net.trust.insert_revocations([rev]).unwrap();
}

fn incarnation(n: u64) -> [u8; ACTOR_INCARNATION_BYTES] {
    n.to_le_bytes()
}

/// `n` changes by 李强 (one incarnation each, seq 1) made on `doc`, each re-pointed at a
/// dependency that does not exist; `fake(i)` chooses it.
fn orphans(net: &Net, doc: &Document, n: u64, fake: impl Fn(u64) -> ChangeHash) -> Vec<Item> {
    let mut d = doc.clone();
    let heads = d.heads();
    let base: AutoCommit = d.at(&heads).unwrap();
    (0..n)
        .map(|i| {
            let mut c = base.clone();
            c.set_actor(actor_for(&net.c_li.public(), &incarnation(50_000 + i)));
            kinds::visits::add_entry(
                &mut c,
                &format!("o{i}"),
                &visit("h3", "李强", "2026-11-03", T0),
            )
            .unwrap();
            c.commit_with(CommitOptions::default().with_time(T0 + 5));
            let ch = c.get_last_local_change().unwrap().clone();
            recraft(net, doc, &ch, &net.c_li, |e| e.deps = vec![fake(i)])
        })
        .collect()
}

/// The schema breaker of attacks_round3: the month becomes a number.
fn breaks_month(tx: &mut AutoCommit) {
    tx.put(ROOT, "month", 5_i64).unwrap();
}

// =============================================================================================
// Invariants 2/3: `Unappliable` must isolate the change that fails, not whatever was released
// beside it.
// =============================================================================================

/// 李强's schema breaker P and 王芳's honest change W both wait for 王芳's D (a Bloom false
/// positive hid D). When D arrives, both are released; the result fails because of P, and
/// *every* released change is set aside as `unappliable`, W included. A node that heard W
/// after D takes it: the heads depend on arrival order, and an honest change is dropped for a
/// colleague's poison.
#[test]
fn an_honest_waiting_change_is_not_dropped_with_a_poison_released_beside_it() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let mut relay = doc.clone();
    let d = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 10,
        "v-d",
    );
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    let p = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_li, 1),
        &net.c_li,
        T0 + 11,
        breaks_month,
    );
    let w = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 2),
        &net.c_wang,
        T0 + 12,
        "v-w",
    );

    // The reference: D, then W, then P (refused: its sender's fault).
    let mut reference = doc.clone();
    reference.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    reference.ingest(&net.ctx(T0 + DAY), batch(&[&w])).unwrap();
    assert!(reference.ingest(&net.ctx(T0 + DAY), batch(&[&p])).is_err());
    assert!(reference.has_change(&h(&w)));

    let mut victim = doc.clone();
    victim.ingest(&net.ctx(T0 + DAY), batch(&[&p])).unwrap();
    victim.ingest(&net.ctx(T0 + DAY), batch(&[&w])).unwrap();
    assert_eq!(victim.n_deferred(), 2, "precondition: both wait for D");
    let got = victim
        .ingest(&net.ctx(T0 + DAY), batch(&[&d]))
        .expect("an honest batch is taken");
    assert!(
        victim.has_change(&h(&w)) || victim.is_deferred(&h(&w)),
        "王芳's honest W was dropped as {:?} because 李强's P was released beside it ({:?})",
        reason_of(&got, h(&w)),
        reasons(&got)
    );
    assert_eq!(
        victim.heads(),
        reference.heads(),
        "arrival order decided the heads"
    );
}

/// 李强 sees that a victim holds 王芳's W waiting for D. He sends one batch: D (王芳's, relayed)
/// and his own schema breaker F built on W. Released W and fresh F fail together; the retry
/// loop blames the released change (W: `unappliable`) and F, the actual culprit, leaves only as
/// `depends-on-set-aside` — his batch is *accepted* (no offence counted) and the honest change is
/// gone. The poison must be the batch's fault (refused) or at least W must survive.
#[test]
fn a_fresh_poison_built_on_an_honest_waiting_change_is_not_blamed_on_it() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let mut relay = doc.clone();
    let d = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 10,
        "v-d",
    );
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    let w = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 2),
        &net.c_wang,
        T0 + 11,
        "v-w",
    );
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&w])).unwrap();
    let f = raw_as(
        &net,
        &mut relay,
        actor_of(&net.c_li, 1),
        &net.c_li,
        T0 + 12,
        breaks_month,
    );
    assert!(f.0.deps().contains(&h(&w)));

    let mut victim = doc.clone();
    victim.ingest(&net.ctx(T0 + DAY), batch(&[&w])).unwrap();
    assert!(victim.is_deferred(&h(&w)), "precondition: W waits for D");
    let got = victim.ingest(&net.ctx(T0 + DAY), batch(&[&d, &f]));
    let blamed_w = matches!(&got, Ok(a) if reason_of(a, h(&w)) == Some("unappliable"));
    // An honest relay brings D again later: W should be there (or still waiting) by then.
    let _ = victim.ingest(&net.ctx(T0 + DAY), batch(&[&d]));
    assert!(
        !blamed_w && (victim.has_change(&h(&w)) || victim.is_deferred(&h(&w))),
        "李强's poison F on W was blamed on 王芳's W: {:?}",
        got.map(|a| reasons(&a))
    );
}

// =============================================================================================
// Invariant 3: readiness must include the actor's previous number.
// =============================================================================================

/// 李强 signs X (his actor, number 1, made on 王芳's D) and Y (number 2) whose dependencies are
/// only the document's old heads (not X). A relay that holds X applies Y without complaint. A
/// victim where X waits for D sees Y "causally ready" (its dependencies are held), applies it
/// before X, Automerge panics on the unknown actor's number 2, and the honest relay's batch is
/// refused as malformed — an offence the relay could not foresee.
#[test]
fn a_change_whose_previous_number_waits_does_not_refuse_an_honest_relay() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let base_heads = doc.clone().heads();
    let mut relay = doc.clone();
    let d = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 10,
        "v-d",
    );
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    let li = actor_of(&net.c_li, 5);
    let x = forge_as(&net, &mut relay, li.clone(), &net.c_li, T0 + 11, "v-x");
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&x])).unwrap();
    let y0 = forge_as(&net, &mut relay, li, &net.c_li, T0 + 12, "v-y");
    let y = recraft(&net, &relay, &y0.0, &net.c_li, |e| {
        e.deps = base_heads.clone()
    });
    assert_eq!(y.0.seq(), 2);
    assert!(!y.0.deps().contains(&h(&x)));
    let relay_took = relay.ingest(&net.ctx(T0 + DAY), batch(&[&y]));
    assert!(
        matches!(&relay_took, Ok(a) if a.new == vec![h(&y)]),
        "precondition: a node holding X takes Y: {relay_took:?}"
    );

    let mut victim = doc.clone();
    victim.ingest(&net.ctx(T0 + DAY), batch(&[&x])).unwrap();
    assert!(victim.is_deferred(&h(&x)), "precondition: X waits for D");
    // The relay sends what it holds of 李强's, in its own order (D hidden by a false positive).
    let got = victim.ingest(&net.ctx(T0 + DAY), batch(&[&x, &y]));
    assert!(got.is_ok(), "an honest relay's batch is refused: {got:?}");
    victim.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    assert_eq!(victim.heads(), relay.heads());
}

/// The same pair both waiting for D: which of X and Y Kahn puts first depends on the waiting
/// map's iteration order (a per-instance random hash seed), so the same arrivals give some
/// nodes X and Y and set both aside as `unappliable` on others.
#[test]
fn the_outcome_of_a_release_does_not_depend_on_hash_map_order() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let mut relay = doc.clone();
    let d = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 10,
        "v-d",
    );
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    let after_d = relay.heads();
    let li = actor_of(&net.c_li, 5);
    let x = forge_as(&net, &mut relay, li.clone(), &net.c_li, T0 + 11, "v-x");
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&x])).unwrap();
    let y0 = forge_as(&net, &mut relay, li, &net.c_li, T0 + 12, "v-y");
    // Y on D only: it waits for D like X, but does not name X.
    let y = recraft(&net, &relay, &y0.0, &net.c_li, |e| e.deps = after_d.clone());
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&y])).unwrap();

    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..16 {
        let mut victim = Document::empty(doc.header().clone(), actor(3));
        let all: Vec<Item> = {
            let mut src = doc.clone();
            src.changes()
                .into_iter()
                .map(|c| {
                    let s = src.signature(&c.hash()).unwrap().clone();
                    (c, s)
                })
                .collect()
        };
        victim
            .ingest(&net.ctx(T0 + DAY), batch(&all.iter().collect::<Vec<_>>()))
            .unwrap();
        victim.ingest(&net.ctx(T0 + DAY), batch(&[&y])).unwrap();
        victim.ingest(&net.ctx(T0 + DAY), batch(&[&x])).unwrap();
        let got = victim.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
        *outcomes
            .entry((victim.has_change(&h(&x)), reasons(&got).len()))
            .or_insert(0) += 1;
    }
    assert_eq!(
        outcomes.len(),
        1,
        "the same arrivals gave different documents: {outcomes:?} ((X taken, n set aside) → nodes)"
    );
    assert!(outcomes.contains_key(&(true, 0)), "{outcomes:?}");
}

// =============================================================================================
// Invariant 2: `lost` and the losing half of an equivocation against a *waiting* change.
// =============================================================================================

/// 李强 signs W1 (his actor, number 1, on a change X by a key nobody certified) and F (the same
/// actor and number, on the document). Node 1 hears W1 (it waits for X), then F: F is set aside
/// as the losing half of an equivocation, *for good* (in `lost`). Then X arrives and is set
/// aside (unknown key), and W1 with it: the "held" half never enters. F is sent again and now
/// enters — but stays in `lost`, so 王芳's honest G built on F is set aside on arrival, for
/// good, although every dependency of G is in the document. Node 2, which heard F first, takes
/// F and G.
#[test]
fn the_losing_half_against_a_waiting_change_does_not_block_later_work() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let stranger = key(99);
    let li = actor_of(&net.c_li, 5);
    let mut on_x: AutoCommit = {
        let mut d = doc.clone();
        let heads = d.heads();
        d.at(&heads).unwrap()
    };
    let x = entry_on(
        &net,
        &doc,
        &mut on_x,
        actor_of(&stranger, 1),
        &stranger,
        T0 + 5,
        "v-x",
    );
    let w1 = entry_on(&net, &doc, &mut on_x, li.clone(), &net.c_li, T0 + 6, "v-w1");
    assert!(w1.0.deps().contains(&h(&x)));
    let mut node2 = doc.clone();
    let f = forge_as(&net, &mut node2, li, &net.c_li, T0 + 7, "v-f");
    assert_eq!((f.0.actor_id(), f.0.seq()), (w1.0.actor_id(), w1.0.seq()));
    node2.ingest(&net.ctx(T0 + DAY), batch(&[&f])).unwrap();
    let g = forge_as(
        &net,
        &mut node2,
        actor_of(&net.c_wang, 2),
        &net.c_wang,
        T0 + 8,
        "v-g",
    );
    node2.ingest(&net.ctx(T0 + DAY), batch(&[&g])).unwrap();
    for it in [&w1, &x, &f] {
        let _ = node2.ingest(&net.ctx(T0 + DAY), batch(&[it]));
    }

    let mut node1 = doc.clone();
    node1.ingest(&net.ctx(T0 + DAY), batch(&[&w1])).unwrap();
    // F is ready and W1 is not: nothing is decided against a waiting change, and F enters.
    let a = node1.ingest(&net.ctx(T0 + DAY), batch(&[&f])).unwrap();
    assert_eq!(a.new, vec![h(&f)], "{:?}", reasons(&a));
    let a = node1.ingest(&net.ctx(T0 + DAY), batch(&[&x])).unwrap();
    assert_eq!(node1.n_deferred(), 0, "W1 left with X: {:?}", reasons(&a));
    let resent = node1.ingest(&net.ctx(T0 + DAY), batch(&[&f])).unwrap();
    let got = node1.ingest(&net.ctx(T0 + DAY), batch(&[&g])).unwrap();
    assert!(
        node1.has_change(&h(&g)),
        "王芳's G (all its dependencies held: F entered = {}) was set aside as {:?}",
        resent.new.contains(&h(&f)),
        reason_of(&got, h(&g))
    );
    assert_eq!(
        node1.heads(),
        node2.heads(),
        "arrival order decided the heads"
    );
}

/// Evidence of an equivocation names, as `held`, a change the document holds: nothing is decided
/// against a change that only waits (it may never enter).
#[test]
fn evidence_against_a_waiting_half_names_a_change_the_document_holds() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let li = actor_of(&net.c_li, 5);
    // W1 waits for a dependency that does not exist.
    let mut d = doc.clone();
    let w0 = forge_as(&net, &mut d, li.clone(), &net.c_li, T0 + 6, "v-w1");
    let w1 = recraft(&net, &doc, &w0.0, &net.c_li, |e| {
        e.deps = vec![ChangeHash([0xab; 32])]
    });
    let f = forge_as(&net, &mut doc.clone(), li, &net.c_li, T0 + 7, "v-f");
    let mut node = doc.clone();
    node.ingest(&net.ctx(T0 + DAY), batch(&[&w1])).unwrap();
    // Nothing is decided against the waiting W1: F, which can apply, enters.
    let a = node.ingest(&net.ctx(T0 + DAY), batch(&[&f])).unwrap();
    assert!(a.equivocations.is_empty(), "{:?}", reasons(&a));
    assert!(node.has_change(&h(&f)));
    // Evidence is made only against a change the document holds: a node holding F that is sent
    // W0 (W1's twin, made on the document, so it could apply) sets W0 aside, naming F.
    let mut replay = doc.clone();
    replay.ingest(&net.ctx(T0 + DAY), batch(&[&f])).unwrap();
    let a = replay.ingest(&net.ctx(T0 + DAY), batch(&[&w0])).unwrap();
    let [ev] = &a.equivocations[..] else {
        panic!("one piece of evidence: {:?}", reasons(&a))
    };
    let held = ChangeHash(ev.held);
    let checked = node
        .change_bytes(&held)
        .zip(node.signature(&held).cloned())
        .map(|(bytes, sig)| ev.check(net.trust.network(), &bytes, &sig));
    assert!(
        matches!(checked, Some(Ok(()))),
        "the evidence names {held}, which the document does not hold ({}), so it proves nothing \
         here; F (a change that could apply) is set aside for good",
        if node.is_deferred(&held) {
            "it waits for a change that does not exist"
        } else {
            "gone"
        }
    );
}

/// The engine lowers `deferred_changes_max` per call to a peer's remaining room
/// (`node/src/engine/sync.rs`, `sync_in`), and `lost` is trimmed to that per-call value: one message from a
/// peer whose room is used up wipes the memory of every losing half, and what builds on them
/// waits again (the round-3 guarantee that they do not pile up in the queue is gone).
#[test]
fn a_per_call_limit_does_not_wipe_the_memory_of_losing_halves() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let li = actor_of(&net.c_li, 9);
    let mut base = doc.clone();
    let e1 = forge_as(&net, &mut base, li.clone(), &net.c_li, T0 + 5, "v-one");
    let e2 = forge_as(&net, &mut base, li, &net.c_li, T0 + 5, "v-two");
    let mut node2 = doc.clone();
    node2.ingest(&net.ctx(T0 + DAY), batch(&[&e2])).unwrap();
    let on_e2 = forge_as(
        &net,
        &mut node2,
        actor_of(&net.c_wang, 3),
        &net.c_wang,
        T0 + 6,
        "v-on",
    );
    let other = forge_as(
        &net,
        &mut doc.clone(),
        actor_of(&net.c_wang, 4),
        &net.c_wang,
        T0 + 7,
        "v-o",
    );

    let mut node = doc.clone();
    node.ingest(&net.ctx(T0 + DAY), batch(&[&e1])).unwrap();
    node.ingest(&net.ctx(T0 + DAY), batch(&[&e2])).unwrap();
    // A message from a peer with no room left (nothing waits in this document).
    let mut tight = net.clone();
    tight.limits.deferred_changes_max = 0;
    node.ingest(&tight.ctx(T0 + DAY), batch(&[&other])).unwrap();
    let got = node.ingest(&net.ctx(T0 + DAY), batch(&[&on_e2])).unwrap();
    assert_eq!(
        reason_of(&got, h(&on_e2)),
        Some("depends-on-set-aside"),
        "a change on the losing half waits again ({} waiting)",
        node.n_deferred()
    );
}

// =============================================================================================
// Invariant 5: sync with a waiting change whose dependency only the peer has.
// =============================================================================================

/// Two replicas sync over the model's framing until neither has anything to say (or `max`
/// rounds). Every message must be accepted; returns the rounds taken.
fn pump(net: &Net, a: &mut Document, b: &mut Document, max: usize) -> usize {
    let (mut sa, mut sb) = (automerge::sync::State::new(), automerge::sync::State::new());
    pump_with(net, a, b, &mut sa, &mut sb, max)
}

fn pump_with(
    net: &Net,
    a: &mut Document,
    b: &mut Document,
    sa: &mut automerge::sync::State,
    sb: &mut automerge::sync::State,
    max: usize,
) -> usize {
    let limits = linli_crdt_model::wire::Limits::default();
    let network = net.trust.network();
    let mut rounds = 0;
    loop {
        let mut quiet = true;
        if let Some(out) = a.generate_sync(sa) {
            check_need(&out.message);
            b.receive_sync(
                &net.ctx(T0 + DAY),
                sb,
                network,
                &out.message,
                &out.signatures,
                &limits,
            )
            .expect("b takes a's message");
            quiet = false;
        }
        if let Some(out) = b.generate_sync(sb) {
            check_need(&out.message);
            a.receive_sync(
                &net.ctx(T0 + DAY),
                sa,
                network,
                &out.message,
                &out.signatures,
                &limits,
            )
            .expect("a takes b's message");
            quiet = false;
        }
        rounds += 1;
        if quiet || rounds >= max {
            return rounds;
        }
    }
}

/// The `need` of a message a peer's `wire` accepts: sorted, without duplicates, at most 64.
fn check_need(bytes: &[u8]) {
    let decoded = linli_crdt_model::wire::decode_sync_message(
        bytes,
        &linli_crdt_model::wire::Limits::default(),
    )
    .expect("the peer's wire decodes our message");
    let need = &decoded.message.need;
    assert!(need.len() <= 64, "need of {}", need.len());
    assert!(
        need.windows(2).all(|w| w[0] < w[1]),
        "need not sorted and deduplicated"
    );
}

/// A and B: the log plus a few of its node's edits. B also holds 王芳's D, and W on D, where D
/// is a false positive of A's Bloom filter (so B never offers it by itself: A has nothing B
/// lacks, so its shared heads never move and its filter stays the same).
fn false_positive_pair(net: &Net) -> (Document, Document, Item, Item) {
    let (mut doc, _) = net.visit_log().unwrap();
    for i in 0..6 {
        doc.edit(&net.ctx(T0 + DAY), &net.c_node, T0 + 2 + i, None, |tx| {
            kinds::visits::add_entry(tx, &format!("a{i}"), &visit("h2", "王芳", "2026-11-02", T0))
        })
        .unwrap();
    }
    let mut a = doc.clone();
    a.set_actor(actor(71));
    let bloom = BloomFilter::from_hashes(
        a.changes()
            .iter()
            .map(Change::hash)
            .collect::<Vec<_>>()
            .into_iter(),
    );
    let mut b = doc.clone();
    b.set_actor(actor(72));
    let d = (0..20_000)
        .map(|k| {
            forge_as(
                net,
                &mut b,
                actor_of(&net.c_wang, 1),
                &net.c_wang,
                T0 + 10 + k,
                "v-d",
            )
        })
        .find(|d| bloom.contains_hash(&h(d)))
        .expect("a false positive among 20,000 candidates");
    b.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    let w = forge_as(
        net,
        &mut b,
        actor_of(&net.c_wang, 2),
        &net.c_wang,
        T0 + 9,
        "v-w",
    );
    b.ingest(&net.ctx(T0 + DAY), batch(&[&w])).unwrap();
    (a, b, d, w)
}

/// Control: B sends W without D (A's Bloom filter claims D); W waits at A; A's `need` asks
/// for D and the replicas converge.
#[test]
fn sync_converges_when_a_false_positive_hides_a_dependency() {
    let net = Net::new();
    let (mut a, mut b, d, w) = false_positive_pair(&net);
    let (mut sa, mut sb) = (automerge::sync::State::new(), automerge::sync::State::new());
    pump_with(&net, &mut a, &mut b, &mut sa, &mut sb, 1);
    assert!(
        a.is_deferred(&h(&w)) && !a.has_change(&h(&d)),
        "precondition: after one round W waits at A and D was not offered"
    );
    pump_with(&net, &mut a, &mut b, &mut sa, &mut sb, 20);
    assert!(
        a.has_change(&h(&d)) && a.has_change(&h(&w)),
        "A misses D or W"
    );
    assert_eq!(a.heads(), b.heads());
    assert_eq!(a.n_deferred(), 0);
    assert_every_change_signed(&mut a, "after sync");
}

/// 李强 has left 64 changes waiting at A, each on a dependency that does not exist and whose
/// hash he chose tiny (0x00…00, 0x00…01, …). A's `need` is the waiting changes' missing
/// dependencies and Automerge's own, *sorted and truncated to 64*: his fake hashes always sort
/// first, so D (and W) are never asked for and A never converges with B.
#[test]
fn sync_need_is_not_crowded_out_by_chosen_fake_dependencies() {
    let net = Net::new();
    let (mut a, mut b, d, w) = false_positive_pair(&net);
    let junk = orphans(&net, &a, 64, |i| {
        let mut x = [0u8; 32];
        x[24..].copy_from_slice(&i.to_be_bytes());
        ChangeHash(x)
    });
    a.ingest(&net.ctx(T0 + DAY), batch(&junk.iter().collect::<Vec<_>>()))
        .unwrap();
    assert_eq!(a.n_deferred(), 64);
    let rounds = pump(&net, &mut a, &mut b, 30);
    assert!(
        a.has_change(&h(&d)) && a.has_change(&h(&w)),
        "after {rounds} rounds A still misses 王芳's D ({}) and W ({}): its need is 李强's 64 \
         fake hashes",
        a.has_change(&h(&d)),
        a.has_change(&h(&w)),
    );
    assert_eq!(a.heads(), b.heads());
}

/// Many waiting changes with many missing dependencies: every message A sends stays within
/// what the peer's `wire` accepts, sorted and deduplicated (checked in `pump`).
#[test]
fn sync_need_stays_bounded_with_hundreds_waiting() {
    let net = Net::new();
    let (mut a, mut b, _, _) = false_positive_pair(&net);
    let junk = orphans(&net, &a, 500, |i| ChangeHash([(i % 251) as u8; 32]));
    a.ingest(&net.ctx(T0 + DAY), batch(&junk.iter().collect::<Vec<_>>()))
        .unwrap();
    assert_eq!(a.missing_dependencies().len(), 251);
    pump(&net, &mut a, &mut b, 10);
}

// =============================================================================================
// Invariant 1: nothing unsigned enters — through `edit`, and across save and load.
// =============================================================================================

/// An edit closure hands a change to Automerge (`apply_changes`) whose dependency this node
/// lacks: Automerge queues it, `get_changes(before)` does not list it, so the edit is "one
/// change" and is taken — with an orphan left in Automerge's own queue. When the dependency
/// arrives by `ingest`, Automerge releases the orphan with it, unsigned and unjudged.
#[test]
fn an_edit_closure_cannot_leave_an_orphan_that_enters_unsigned() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let mut relay = doc.clone();
    let d = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 7),
        &net.c_wang,
        T0 + 10,
        "v-d",
    );
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    // Unsigned, by a key with no certificate at all.
    let z = forge_as(
        &net,
        &mut relay,
        actor_of(&key(99), 1),
        &key(99),
        T0 + 11,
        "v-z",
    );

    let mut node = doc.clone();
    let zc = z.0.clone();
    let edited = node.edit(&net.ctx(T0 + DAY), &net.c_wang, T0 + 12, None, |tx| {
        tx.apply_changes([zc]).expect("queued");
        kinds::visits::add_entry(tx, "v-e", &visit("h1", "王芳", "2026-11-03", T0))
    });
    if edited.is_ok() {
        let got = node.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
        assert_eq!(got.new, vec![h(&d)], "{:?}", reasons(&got));
        assert!(
            !node.has_change(&h(&z)),
            "a stranger's change Z entered through an edit's leftover queue"
        );
        assert_every_change_signed(&mut node, "after an edit that queued an orphan");
    }
}

/// Waiting changes and a save/load round trip (also of bytes that carry orphans, as an older
/// save did): after the dependency arrives every change in the document is signed, and what
/// waited before the restart enters signed when it is sent again.
#[test]
fn waiting_changes_across_save_and_load_never_enter_unsigned() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let mut relay = doc.clone();
    let d = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 10,
        "v-d",
    );
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    let w = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 2),
        &net.c_wang,
        T0 + 11,
        "v-w",
    );
    let l = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_li, 2),
        &net.c_li,
        T0 + 12,
        "v-l",
    );

    let mut node = doc.clone();
    node.ingest(&net.ctx(T0 + DAY), batch(&[&w, &l])).unwrap();
    assert_eq!(node.n_deferred(), 2);
    let sigs: Vec<ChangeSignature> = node.signatures().cloned().collect();
    let clean = node.save();
    let mut with_orphans = clean.clone();
    with_orphans.extend_from_slice(w.0.raw_bytes());
    with_orphans.extend_from_slice(l.0.raw_bytes());
    for (what, bytes) in [("clean", &clean), ("with orphans", &with_orphans)] {
        let mut n = Document::load(node.header().clone(), bytes, sigs.clone(), actor(9)).unwrap();
        assert_eq!(n.n_deferred(), 0, "{what}");
        assert!(n.missing_dependencies().is_empty(), "{what}");
        n.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
        assert_every_change_signed(&mut n, what);
        assert!(
            !n.has_change(&h(&w)),
            "{what}: W entered without being sent again"
        );
        n.ingest(&net.ctx(T0 + DAY), batch(&[&w, &l])).unwrap();
        assert_every_change_signed(&mut n, what);
        // And again through a second round trip.
        let sigs2: Vec<ChangeSignature> = n.signatures().cloned().collect();
        let mut m = Document::load(n.header().clone(), &n.save(), sigs2, actor(10)).unwrap();
        assert_eq!(m.heads(), n.heads());
        assert_every_change_signed(&mut m, what);
    }
    node.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    assert_every_change_signed(&mut node, "released without a restart");
    assert_eq!(node.heads(), relay.clone().heads_with(&[&w, &l], &net));
}

trait HeadsWith {
    fn heads_with(&mut self, items: &[&Item], net: &Net) -> Vec<ChangeHash>;
}

impl HeadsWith for Document {
    fn heads_with(&mut self, items: &[&Item], net: &Net) -> Vec<ChangeHash> {
        self.ingest(&net.ctx(T0 + DAY), batch(items)).unwrap();
        self.heads()
    }
}

// =============================================================================================
// Invariant 2: re-judgement when a revocation lands while changes wait.
// =============================================================================================

/// L (李强, dated after his cutoff) on 王芳's D, G (王芳) on L, Y (王芳) beside. In every
/// order, one by one and in pairs, the revocation lands after the first arrival: L and G never
/// enter and every node ends with the same heads.
#[test]
fn a_revocation_landing_while_changes_wait_gives_the_same_heads_in_any_order() {
    let net0 = Net::new();
    let (doc, _) = net0.visit_log().unwrap();
    let mut relay = doc.clone();
    let d = forge_as(
        &net0,
        &mut relay,
        actor_of(&net0.c_wang, 1),
        &net0.c_wang,
        T0 + 5,
        "v-d",
    );
    relay.ingest(&net0.ctx(T0 + DAY), batch(&[&d])).unwrap();
    let y = forge_as(
        &net0,
        &mut relay,
        actor_of(&net0.c_wang, 3),
        &net0.c_wang,
        T0 + 6,
        "v-y",
    );
    let l = forge_as(
        &net0,
        &mut relay,
        actor_of(&net0.c_li, 1),
        &net0.c_li,
        T0 + 10,
        "v-l",
    );
    relay.ingest(&net0.ctx(T0 + DAY), batch(&[&l])).unwrap();
    let g = forge_as(
        &net0,
        &mut relay,
        actor_of(&net0.c_wang, 2),
        &net0.c_wang,
        T0 + 11,
        "v-g",
    );
    let mut revoked = net0.clone();
    revoke_li(&mut revoked, T0 + 9);
    let items = [&l, &d, &g, &y];
    let mut expected: Option<Vec<ChangeHash>> = None;
    for order in permutations(items.len()) {
        for size in [1, 2] {
            let mut node = doc.clone();
            for (k, group) in order.chunks(size).enumerate() {
                let net = if k == 0 { &net0 } else { &revoked };
                let its: Vec<_> = group.iter().map(|i| items[*i]).collect();
                node.ingest(&net.ctx(T0 + DAY), batch(&its))
                    .expect("never refused as a whole");
            }
            // Peers send again whatever is missing.
            node.ingest(&revoked.ctx(T0 + DAY), batch(&items)).unwrap();
            if size == 2 && order[..2].contains(&0) && order[..2].contains(&1) {
                continue; // L and D together before the revocation: L legitimately entered.
            }
            assert!(
                !node.has_change(&h(&l)) && !node.has_change(&h(&g)),
                "{order:?}/{size}"
            );
            assert_eq!(node.n_deferred(), 0, "{order:?}/{size}");
            let heads = node.heads();
            assert_eq!(
                expected.get_or_insert(heads.clone()),
                &heads,
                "{order:?}/{size}"
            );
            assert_every_change_signed(&mut node, "revocation mid-way");
        }
    }
}

// =============================================================================================
// Invariant 4: the retry loop terminates; the waiting queue and `lost` stay bounded.
// =============================================================================================

/// 25 poisons and 25 honest changes wait for D; D arrives with an honest fresh change. The
/// loop ends (every released change is set aside at once), the fresh part is taken, nothing
/// waits. Then a fresh poison beside released ones: the batch is refused and nothing of the
/// queue is lost with it.
#[test]
fn the_retry_loop_terminates_with_many_poisons_released() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let mut relay = doc.clone();
    let d = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 10,
        "v-d",
    );
    relay.ingest(&net.ctx(T0 + DAY), batch(&[&d])).unwrap();
    let mut waiting = Vec::new();
    for i in 0..25u8 {
        waiting.push(raw_as(
            &net,
            &mut relay,
            actor_of(&net.c_li, 100 + i),
            &net.c_li,
            T0 + 11,
            breaks_month,
        ));
        waiting.push(forge_as(
            &net,
            &mut relay,
            actor_of(&net.c_wang, 100 + i),
            &net.c_wang,
            T0 + 11,
            &format!("h{i}"),
        ));
    }
    let fresh = forge_as(
        &net,
        &mut doc.clone(),
        actor_of(&net.c_wang, 9),
        &net.c_wang,
        T0 + 12,
        "v-f",
    );
    let fresh_poison = raw_as(
        &net,
        &mut doc.clone(),
        actor_of(&net.c_li, 9),
        &net.c_li,
        T0 + 12,
        breaks_month,
    );

    let mut node = doc.clone();
    node.ingest(
        &net.ctx(T0 + DAY),
        batch(&waiting.iter().collect::<Vec<_>>()),
    )
    .unwrap();
    assert_eq!(node.n_deferred(), 50);
    // A fresh poison beside released ones: refused, and the queue is as it was.
    let e = node
        .ingest(&net.ctx(T0 + DAY), batch(&[&d, &fresh_poison]))
        .expect_err("the fresh poison is the sender's fault");
    assert_eq!(e.reason(), "schema-violation");
    assert_eq!(
        node.n_deferred(),
        50,
        "the queue is untouched by a refused batch"
    );
    let start = Instant::now();
    let got = node
        .ingest(&net.ctx(T0 + DAY), batch(&[&d, &fresh]))
        .expect("taken");
    eprintln!("50 released, 25 poisoned: {:?}", start.elapsed());
    assert!(node.has_change(&h(&d)) && node.has_change(&h(&fresh)));
    assert_eq!(node.n_deferred(), 0);
    assert!(reasons(&got).iter().all(|(_, r)| *r == "unappliable"));
    assert_every_change_signed(&mut node, "after the retry");
}

/// 200 orphans against a queue of 5: at most 5 wait, the rest are `waiting-full`; 200
/// equivocating pairs with a bound of 5 on `lost`; and a losing half forgotten from `lost`
/// does not change the heads (what builds on it waits, and the half is set aside again when it
/// is sent).
#[test]
fn the_queue_and_lost_stay_bounded_and_forgetting_changes_nothing() {
    let mut net = Net::new();
    net.limits.deferred_changes_max = 5;
    let (doc, _) = net.visit_log().unwrap();
    let junk = orphans(&net, &doc, 200, |i| ChangeHash([(i % 200) as u8 + 1; 32]));
    let mut node = doc.clone();
    let got = node
        .ingest(&net.ctx(T0 + DAY), batch(&junk.iter().collect::<Vec<_>>()))
        .unwrap();
    assert_eq!(node.n_deferred(), 5);
    assert_eq!(got.set_aside.len(), 195);
    assert!(node.missing_dependencies().len() <= 5);

    // Equivocating pairs: the first of each is taken, the second lost; 3 pairs, a bound of 2.
    let mut big = net.clone();
    big.limits.deferred_changes_max = 1000;
    let mut pairs = Vec::new();
    for i in 0..3u8 {
        let a = actor_of(&net.c_li, 200 + i);
        let e1 = forge_as(
            &net,
            &mut doc.clone(),
            a.clone(),
            &net.c_li,
            T0 + 5,
            &format!("e{i}a"),
        );
        let e2 = forge_as(
            &net,
            &mut doc.clone(),
            a,
            &net.c_li,
            T0 + 5,
            &format!("e{i}b"),
        );
        let mut other = doc.clone();
        other.ingest(&net.ctx(T0 + DAY), batch(&[&e2])).unwrap();
        let on = forge_as(
            &net,
            &mut other,
            actor_of(&net.c_wang, 200 + i),
            &net.c_wang,
            T0 + 6,
            &format!("on{i}"),
        );
        pairs.push((e1, e2, on));
    }
    let mut tight = net.clone();
    tight.limits.deferred_changes_max = 2;
    let mut ends = Vec::new();
    for n in [&tight, &big] {
        let mut node = doc.clone();
        for (e1, e2, _) in &pairs {
            node.ingest(&n.ctx(T0 + DAY), batch(&[e1, e2])).unwrap();
        }
        for (_, _, on) in &pairs {
            node.ingest(&n.ctx(T0 + DAY), batch(&[on])).unwrap();
        }
        for (_, e2, on) in &pairs {
            node.ingest(&n.ctx(T0 + DAY), batch(&[e2, on])).unwrap();
        }
        assert_eq!(node.n_deferred(), 0);
        ends.push(node.heads());
    }
    assert_eq!(
        ends[0], ends[1],
        "forgetting a losing half changed the heads"
    );
}

// =============================================================================================
// Invariant 6: cost of the pool.
// =============================================================================================

/// Each ingest rebuilds its pool from every waiting change (clones, a dependency index, Kahn
/// up to three times, a new waiting map), so a one-change batch costs time linear in what
/// waits: a writer who parks the queue full (10,000 by default) taxes every later message on
/// the document. Releasing N changes one per batch grows about as fast with the queue as
/// without it (each ingest's clone of the document dominates at these sizes). Measured and
/// printed, not asserted.
#[test]
fn cost_of_an_ingest_grows_with_what_waits() {
    let net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let mut per_ingest = Vec::new();
    let junk = orphans(&net, &doc, 1000, |i| {
        let mut x = [0xcd; 32];
        x[..8].copy_from_slice(&i.to_le_bytes());
        ChangeHash(x)
    });
    for n in [0usize, 250, 1000] {
        let mut node = doc.clone();
        node.ingest(
            &net.ctx(T0 + DAY),
            batch(&junk[..n].iter().collect::<Vec<_>>()),
        )
        .unwrap();
        assert_eq!(node.n_deferred(), n);
        let singles: Vec<Item> = (0..10u8)
            .map(|i| {
                forge_as(
                    &net,
                    &mut doc.clone(),
                    actor_of(&net.c_wang, i),
                    &net.c_wang,
                    T0 + 6,
                    &format!("s{i}"),
                )
            })
            .collect();
        let start = Instant::now();
        for s in &singles {
            let got = node.ingest(&net.ctx(T0 + DAY), batch(&[s])).unwrap();
            assert_eq!(got.new, vec![h(s)]);
        }
        let each = start.elapsed() / 10;
        per_ingest.push((n, each));
        assert_eq!(node.n_deferred(), n);
    }
    eprintln!("one-change ingest with N waiting (N, time): {per_ingest:?}");

    // Release one by one: N changes each waiting for its own D_i; the D_i arrive one a batch.
    let mut release = Vec::new();
    for n in [30u64, 60, 120] {
        let heads = doc.clone().heads();
        let base: AutoCommit = doc.clone().at(&heads).unwrap();
        let mut ds = Vec::new();
        let mut ws = Vec::new();
        for i in 0..n {
            let mut c = base.clone();
            ds.push(entry_on(
                &net,
                &doc,
                &mut c,
                actor_for(&net.c_wang.public(), &incarnation(i)),
                &net.c_wang,
                T0 + 5,
                &format!("d{i}"),
            ));
            ws.push(entry_on(
                &net,
                &doc,
                &mut c,
                actor_for(&net.c_li.public(), &incarnation(i)),
                &net.c_li,
                T0 + 6,
                &format!("w{i}"),
            ));
        }
        let mut waited = doc.clone();
        waited
            .ingest(&net.ctx(T0 + DAY), batch(&ws.iter().collect::<Vec<_>>()))
            .unwrap();
        let start = Instant::now();
        for d in &ds {
            waited.ingest(&net.ctx(T0 + DAY), batch(&[d])).unwrap();
        }
        let with_queue = start.elapsed();
        assert_eq!(waited.n_deferred(), 0);
        // The same changes in as many batches, each W with its D: nothing waits.
        let mut direct = doc.clone();
        let start = Instant::now();
        for (d, w) in ds.iter().zip(&ws) {
            direct.ingest(&net.ctx(T0 + DAY), batch(&[d, w])).unwrap();
        }
        let without = start.elapsed();
        assert_eq!(waited.heads(), direct.heads());
        release.push((n, with_queue, without));
    }
    eprintln!("release one by one (N, with queue, same changes without queue): {release:?}");
    let growth = |v: Duration, w: Duration| w.as_secs_f64() / v.as_secs_f64().max(1e-9);
    eprintln!(
        "from N={} to N={}: with queue x{:.1}, without x{:.1}; one ingest with {} waiting costs x{:.1} one with none",
        release[0].0,
        release[2].0,
        growth(release[0].1, release[2].1),
        growth(release[0].2, release[2].2),
        per_ingest[2].0,
        growth(per_ingest[0].1, per_ingest[2].1),
    );
}
