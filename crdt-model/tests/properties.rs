//! Property tests: delivery order never matters.
//!
//! - any permutation or duplication of change delivery, in any batching, converges to the same
//!   heads and typed state;
//! - authorization and revocation verdicts do not depend on the order records arrive in;
//! - save/load round-trips.

use linli_crdt_model::cert::{Certificate, Revocation, RevocationBody, Role};
use linli_crdt_model::document::{Batch, ChangeSignature, Document};
use linli_crdt_model::kinds;
use linli_crdt_model::testkit::{DAY, Net, T0, actor, visit};
use linli_crdt_model::trust::Trust;
use proptest::prelude::*;

/// Three writers edit concurrently from the same base; returns every change with its signature.
fn concurrent_history(n_each: usize) -> (Net, Document, Vec<(automerge::Change, ChangeSignature)>) {
    let net = Net::new();
    let (base, _) = net.visit_log().unwrap();
    let mut all = Vec::new();
    let writers = [
        (&net.c_wang, "王芳", "h1"),
        (&net.c_li, "李强", "h3"),
        (&net.c_node, "节点", "h2"),
    ];
    for (w, (key, name, household)) in writers.iter().enumerate() {
        let mut fork = base.clone();
        fork.set_actor(actor(10 + w as u8));
        for i in 0..n_each {
            let id = format!("v{w}-{i}");
            let day = format!("2026-11-{:02}", 1 + i % 28);
            fork.edit(&net.ctx(T0), key, T0 + (i as i64) * 1000, None, |tx| {
                kinds::visits::add_entry(tx, &id, &visit(household, name, &day, T0))?;
                if i % 3 == 2 {
                    kinds::visits::set_follow_up(tx, &id, Some("已联系社区医生"))?;
                }
                Ok(())
            })
            .unwrap();
        }
        let mut fork_changes = fork.changes();
        fork_changes.retain(|c| !base.clone().has_change(&c.hash()));
        for c in fork_changes {
            let sig = fork.signature(&c.hash()).unwrap().clone();
            all.push((c, sig));
        }
    }
    (net, base, all)
}

/// Deliver `order` (indices into `all`, duplicates allowed) in batches of `batch` to a replica.
/// A change that arrives before its dependency waits for it, so one pass suffices.
fn deliver(
    net: &Net,
    base: &Document,
    all: &[(automerge::Change, ChangeSignature)],
    order: &[usize],
    batch: usize,
) -> Document {
    let mut doc = base.clone();
    doc.set_actor(actor(90));
    for chunk in order.chunks(batch.max(1)) {
        let b = Batch {
            network: Some(net.trust.network()),
            changes: chunk.iter().map(|i| all[*i].0.clone()).collect(),
            signatures: chunk.iter().map(|i| all[*i].1.clone()).collect(),
        };
        if let Err(e) = doc.ingest(&net.ctx(T0 + DAY), b) {
            panic!("unexpected refusal: {e}");
        }
    }
    assert_eq!(
        doc.n_deferred(),
        0,
        "every change's dependencies were delivered"
    );
    doc
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn any_delivery_order_converges(seed in any::<u64>(), batch in 1usize..6, dup in 0usize..5) {
        let (net, base, all) = concurrent_history(4);
        // A seeded permutation with some duplicates.
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.extend((0..dup).map(|i| (seed as usize + i * 7) % all.len()));
        let mut state = seed;
        for i in (1..order.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let mut reference = deliver(&net, &base, &all, &(0..all.len()).collect::<Vec<_>>(), all.len());
        let mut got = deliver(&net, &base, &all, &order, batch);
        let mut want_heads = reference.heads();
        want_heads.sort();
        let mut got_heads = got.heads();
        got_heads.sort();
        prop_assert_eq!(got_heads, want_heads);
        prop_assert_eq!(
            kinds::visits::hydrate(got.read()).unwrap(),
            kinds::visits::hydrate(reference.read()).unwrap()
        );
        prop_assert_eq!(kinds::visits::hydrate(got.read()).unwrap().entries.len(), 12);
    }

    #[test]
    fn save_load_round_trips(n in 1usize..6) {
        let (net, base, all) = concurrent_history(n);
        let mut doc = deliver(&net, &base, &all, &(0..all.len()).collect::<Vec<_>>(), 3);
        let bytes = doc.save();
        let sigs: Vec<_> = doc.signatures().cloned().collect();
        let mut back = Document::load(doc.header().clone(), &bytes, sigs, actor(91)).unwrap();
        prop_assert_eq!(back.heads(), doc.heads());
        prop_assert_eq!(back.n_changes(), doc.n_changes());
        prop_assert_eq!(kinds::visits::hydrate(back.read()).unwrap(), kinds::visits::hydrate(doc.read()).unwrap());
    }

    #[test]
    fn trust_verdicts_do_not_depend_on_arrival_order(seed in any::<u64>(), split in 0usize..20) {
        let net = Net::new();
        let mut certs: Vec<Certificate> = net.trust.certificates().map(|(_, c)| c.clone()).collect();
        let revs = vec![
            // 李强 moves away (调离): from T0 on he no longer writes for 胜利社区.
            Revocation::issue(RevocationBody {
                network: net.trust.network(), key: net.c_li.public(), issuer: net.c_admin.public(),
                unit: net.shengli.id.clone(), at_ms: T0, cutoff_ms: T0, reason: "调离".into(),
                keep_issued: false,
            }, &net.c_admin),
            // The street admin's key is lost: everything it certified ends at the cutoff.
            Revocation::issue(RevocationBody {
                network: net.trust.network(), key: net.s_admin.public(), issuer: net.d_admin.public(),
                unit: net.street.id.clone(), at_ms: T0, cutoff_ms: T0, reason: "密钥泄露".into(),
                keep_issued: false,
            }, &net.d_admin),
        ];
        let mut state = seed;
        for i in (1..certs.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            certs.swap(i, (state >> 33) as usize % (i + 1));
        }
        // Interleave certificates and revocations at an arbitrary point, in arbitrary order.
        let split = split.min(certs.len());
        let mut a = Trust::new(net.genesis.clone()).unwrap();
        if seed % 2 == 0 {
            a.insert_revocations(revs.iter().rev().cloned()).unwrap();
            a.insert_certificates(certs[..split].iter().cloned()).unwrap();
        } else {
            a.insert_certificates(certs[..split].iter().cloned()).unwrap();
            a.insert_revocations(revs.iter().cloned()).unwrap();
        }
        for (i, c) in certs[split..].iter().enumerate() {
            a.insert_certificates([c.clone()]).unwrap();
            if i == 2 {
                a.insert_registrations(net.trust.registrations().map(|(_, r)| r.clone())).unwrap();
            }
        }
        a.insert_registrations(net.trust.registrations().map(|(_, r)| r.clone())).unwrap();
        let mut b = Trust::new(net.genesis.clone()).unwrap();
        b.insert_registrations(net.trust.registrations().map(|(_, r)| r.clone())).unwrap();
        b.insert_certificates(net.trust.certificates().map(|(_, c)| c.clone())).unwrap();
        b.insert_revocations(revs.clone()).unwrap();

        let keys = [&net.d_admin, &net.s_admin, &net.s_node, &net.c_admin, &net.c_wang, &net.c_li, &net.c_node, &net.q_zhao];
        for k in keys {
            for at in [T0 - 1, T0, T0 + 1] {
                let va = a.authorize(&k.public(), at, |_, _| true);
                let vb = b.authorize(&k.public(), at, |_, _| true);
                prop_assert_eq!(va, vb);
            }
        }
        // Spot-check the verdicts themselves.
        prop_assert!(b.is_revoked(&net.s_admin.public()));
        prop_assert!(b.authorize(&net.c_wang.public(), T0 - 1, |_, r| r == Role::Writer).is_ok(), "before the cutoff");
        prop_assert!(b.authorize(&net.c_wang.public(), T0, |_, _| true).is_err(), "chain cut at the cutoff");
        prop_assert!(b.authorize(&net.d_admin.public(), T0 + 1, |_, _| true).is_ok(), "above the revoker's reach");
        prop_assert!(b.authorize(&net.c_li.public(), T0 - 1, |_, _| true).is_ok(), "signed before the cutoff");
        prop_assert!(b.authorize(&net.c_li.public(), T0, |_, _| true).is_err());
    }
}
