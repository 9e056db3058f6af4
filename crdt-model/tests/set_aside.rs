//! What a node does with changes it refuses under what it knows now, when the rest of a batch
//! is fine: it sets them aside (with everything in the batch that depends on them) and takes
//! the rest. And the attacks that setting aside must not open: a writer squatting a colleague's
//! actor, an author equivocating, a relay of a change revoked after it took it.

use linli_crdt_model::document::Rejected;
use linli_crdt_model::testkit::forge::{batch, forge_as, reasons};
use linli_crdt_model::testkit::{DAY, Net, T0, actor_of, permutations, revocation};

/// 李强, a writer of the same log, signs a change under 王芳's actor at the number 王芳 will
/// use next. Were actors not bound to keys, every node that saw it first would refuse 王芳's
/// real change as a duplicate number, and the network would split by arrival order. It is
/// refused outright, as the sender's own fault, and 王芳's change is taken everywhere.
#[test]
fn a_writer_cannot_take_the_next_number_of_a_colleagues_actor() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let wang_actor = actor_of(&net.c_wang, 7);
    let squat = forge_as(
        &net,
        &mut doc,
        wang_actor.clone(),
        &net.c_li,
        T0 + 5,
        "v-squat",
    );
    let real = forge_as(&net, &mut doc, wang_actor, &net.c_wang, T0 + 6, "v-real");
    assert_eq!(
        squat.0.seq(),
        real.0.seq(),
        "the squatter took the same number"
    );

    for order in [[&squat, &real], [&real, &squat]] {
        let mut replica = doc.clone();
        let mut taken = Vec::new();
        for item in order {
            match replica.ingest(&net.ctx(T0 + DAY), batch(&[item])) {
                Ok(a) => taken.extend(a.new),
                Err(e) => {
                    assert_eq!(item.0.hash(), squat.0.hash(), "{e}");
                    assert_eq!(e.reason(), "foreign-actor");
                }
            }
        }
        assert_eq!(
            taken,
            vec![real.0.hash()],
            "王芳's change is taken in either order"
        );
    }
}

/// An author signs two different changes with one actor and number. Each node keeps the one
/// that reached it first and sets the other aside with proof of the author's fault; a
/// colleague's change that depends on neither reaches both.
#[test]
fn an_equivocation_is_set_aside_with_proof_in_either_order() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let wang = actor_of(&net.c_wang, 9);
    let e1 = forge_as(&net, &mut doc, wang.clone(), &net.c_wang, T0 + 5, "v-one");
    let e2 = forge_as(&net, &mut doc, wang, &net.c_wang, T0 + 5, "v-two");
    assert_ne!(e1.0.hash(), e2.0.hash());
    let li = forge_as(
        &net,
        &mut doc,
        actor_of(&net.c_li, 3),
        &net.c_li,
        T0 + 6,
        "v-li",
    );

    for (first, second) in [(&e1, &e2), (&e2, &e1)] {
        let mut node = doc.clone();
        let a = node
            .ingest(&net.ctx(T0 + DAY), batch(&[first]))
            .expect("the first is taken");
        assert_eq!(a.new, vec![first.0.hash()]);
        let b = node
            .ingest(&net.ctx(T0 + DAY), batch(&[second, &li]))
            .expect("the batch is taken in part: equivocation is not the relay's fault");
        assert_eq!(
            b.new,
            vec![li.0.hash()],
            "the colleague's change still flows"
        );
        assert_eq!(reasons(&b), vec![(second.0.hash(), "equivocation")]);
        let [evidence] = &b.equivocations[..] else {
            panic!("one piece of evidence: {:?}", b.equivocations);
        };
        assert_eq!(evidence.author, net.c_wang.public());
        assert_eq!(evidence.held, first.0.hash().0);
        let held = node.change_bytes(&first.0.hash()).unwrap();
        let held_sig = node.signature(&first.0.hash()).unwrap().clone();
        evidence
            .check(net.trust.network(), &held, &held_sig)
            .expect("the evidence proves the author's fault");
        // Evidence against someone else does not hold: paired with 李强's change it fails.
        let li_bytes = node.change_bytes(&li.0.hash()).unwrap();
        let li_sig = node.signature(&li.0.hash()).unwrap().clone();
        assert!(
            evidence
                .check(net.trust.network(), &li_bytes, &li_sig)
                .is_err()
        );
    }

    // Both halves in one batch: the first listed is taken, the other set aside.
    let mut node = doc.clone();
    let a = node.ingest(&net.ctx(T0 + DAY), batch(&[&e1, &e2])).unwrap();
    assert_eq!(a.new, vec![e1.0.hash()]);
    assert_eq!(reasons(&a), vec![(e2.0.hash(), "equivocation")]);
}

/// What Automerge allows: a change that depends on a set-aside one can never be applied (its
/// dependency will never be in the document), so it is set aside too, in the same batch, with
/// the change it depends on named.
#[test]
fn what_depends_on_a_set_aside_change_is_set_aside_with_it() {
    let mut net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    // On the relay: 李强's change X (dated T0+10), then 王芳's change Z made on top of it, and
    // 王芳's change Y made beside it.
    let mut relay = doc.clone();
    let x = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_li, 1),
        &net.c_li,
        T0 + 10,
        "v-x",
    );
    let y = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 1),
        &net.c_wang,
        T0 + 11,
        "v-y",
    );
    relay
        .ingest(&net.ctx(T0 + DAY), batch(&[&x]))
        .expect("the relay took X before any revocation");
    let z = forge_as(
        &net,
        &mut relay,
        actor_of(&net.c_wang, 2),
        &net.c_wang,
        T0 + 12,
        "v-z",
    );
    assert!(z.0.deps().contains(&x.0.hash()));

    // Here, the community revoked 李强 from T0+9 before X arrived.
    let rev = revocation(
        &net.trust,
        &net.c_admin,
        &net.c_li.public(),
        &net.shengli.id,
        T0 + 20,
        T0 + 9,
        true,
        "离职",
    );
    net.trust.insert_revocations([rev]).unwrap();
    let a = doc
        .ingest(&net.ctx(T0 + DAY), batch(&[&x, &z, &y]))
        .expect("an honest relay's batch is taken in part");
    assert_eq!(a.new, vec![y.0.hash()]);
    let mut want = vec![
        (x.0.hash(), "revoked"),
        (z.0.hash(), "depends-on-set-aside"),
    ];
    want.sort();
    assert_eq!(reasons(&a), want);
    let on = a
        .set_aside
        .iter()
        .find_map(|s| match s.reason {
            Rejected::DependsOnSetAside { change, on } if change == z.0.hash() => Some(on),
            _ => None,
        })
        .unwrap();
    assert_eq!(on, x.0.hash());
    assert!(a.equivocations.is_empty());
    assert_eq!(doc.n_deferred(), 0, "nothing set aside waits in the queue");
}

/// Whatever batches the changes come in, and in whatever order, a node ends with the same
/// document: set-aside verdicts are per change, never per batch.
#[test]
fn the_same_changes_are_taken_whatever_the_batches_and_their_order() {
    let mut net = Net::new();
    let (doc, _) = net.visit_log().unwrap();
    let mut relay = doc.clone();
    let mut all = Vec::new();
    // 王芳 and 李强 alternate; 赵强 (another community's worker) may not write here.
    let writers = [&net.c_wang, &net.c_li, &net.q_zhao];
    for i in 0..6u8 {
        let w = writers[usize::from(i) % 3];
        let item = forge_as(
            &net,
            &mut relay,
            actor_of(w, i),
            w,
            T0 + 10 + i64::from(i),
            &format!("v{i}"),
        );
        // The relay takes what it may, so later changes build on earlier ones.
        let _ = relay.ingest(&net.ctx(T0 + DAY), batch(&[&item]));
        all.push(item);
    }
    let rev = revocation(
        &net.trust,
        &net.c_admin,
        &net.c_li.public(),
        &net.shengli.id,
        T0 + 30,
        T0 + 12,
        true,
        "离职",
    );
    net.trust.insert_revocations([rev]).unwrap();

    let mut one = doc.clone();
    one.ingest(&net.ctx(T0 + DAY), batch(&all.iter().collect::<Vec<_>>()))
        .unwrap();
    let expected = one.heads();
    let groups: Vec<Vec<usize>> = vec![vec![0, 1], vec![2, 3], vec![4, 5]];
    for order in permutations(groups.len()) {
        let mut node = doc.clone();
        for g in &order {
            let items: Vec<_> = groups[*g].iter().map(|i| &all[*i]).collect();
            node.ingest(&net.ctx(T0 + DAY), batch(&items))
                .expect("never refused as a whole");
        }
        assert_eq!(node.heads(), expected, "order {order:?}");
    }
}
