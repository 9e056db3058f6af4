//! Consultation minutes (协商议事记录): one consultation on one topic, from the residents'
//! input through opinions and decisions to follow-up and publication.
//!
//! The forms are those of seed 000 §二(一): meetings (居民议事会, 决策听证会, 社区事务监督评议会),
//! dialogue (走访座谈, 民主恳谈), written consultation (征求意见书, 告知函) and online. Weihai routes
//! each item by size and authority to one of three meetings (三会: 小微事务恳谈会, 社区党群议事会,
//! 重大事项论证会), with residents' micro-wishes, small proposals and disputes as input, "and
//! makes the results public in time" (seed 001). Shanghai's stages run deliberate (先议), consult
//! (商议), resolve at the residents' (representatives') meeting (决议) (seed 004 (七)), so the stage
//! only moves forward. Once published, decisions are a public record and no longer change
//! ([`EditError::Published`]); the supervision committee checks their execution against it
//! (seed 004 (九)).

use std::collections::BTreeMap;

use automerge::AutoCommit;
use autosurgeon::{Hydrate, Reconcile};

use super::{EditError, SchemaError, UnknownValue};

const FORM: &str = "form";
const MEETING: &str = "meeting";
const STAGE: &str = "stage";
const TOPIC: &str = "topic";
const TOPIC_SOURCE: &str = "topic_source";
const HELD_AT: &str = "held_at";
const LOCATION: &str = "location";
const PARTICIPANTS: &str = "participants";
const OPINIONS: &str = "opinions";
const DECISIONS: &str = "decisions";
const FOLLOW_UPS: &str = "follow_ups";
const PUBLISHED: &str = "published";
const PUBLISHED_AT_MS: &str = "published_at_ms";

string_enum! {
    /// How the consultation is held (seed 000 §二(一)).
    pub enum Form ("a consultation form") {
        Council = "council", "居民议事会";
        Hearing = "hearing", "听证会";
        SupervisionReview = "supervision-review", "监督评议会";
        /// Visits, interviews, 民主恳谈.
        Dialogue = "dialogue", "对话协商";
        /// 征求意见书, 告知函.
        Written = "written", "书面协商";
        Online = "online", "网络协商";
    }
}

string_enum! {
    /// Weihai's three meetings (三会, seed 001), chosen by the size of the matter.
    pub enum Meeting ("a meeting") {
        SmallMattersTalk = "small-matters-talk", "小微事务恳谈会";
        PartyResidentsCouncil = "party-residents-council", "党群议事会";
        MajorMattersReview = "major-matters-review", "重大事项论证会";
    }
}

string_enum! {
    /// Shanghai's stages (seed 004 (七)), in order.
    pub enum Stage ("a stage") {
        Deliberate = "deliberate", "先议";
        Consult = "consult", "商议";
        Resolve = "resolve", "决议";
    }
}

string_enum! {
    /// Where the topic came from (seed 001).
    pub enum TopicSource ("a topic source") {
        MicroWish = "micro-wish", "微心愿";
        Proposal = "proposal", "小提案";
        Dispute = "dispute", "矛盾纠纷";
        Other = "other", "其他";
    }
}

/// What the minutes are about, set by [`init`] and correctable by [`set_meta`] until published.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub form: Form,
    pub meeting: Option<Meeting>,
    pub topic: String,
    pub topic_source: TopicSource,
    /// `"YYYY-MM-DD"`.
    pub held_at: String,
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Participant {
    pub name: String,
    /// E.g. 居民代表, 社区书记, 物业公司.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Opinion {
    /// Name of who spoke.
    pub by: String,
    pub text: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub text: String,
    pub votes_for: u32,
    pub votes_against: u32,
    pub votes_abstain: u32,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct FollowUp {
    pub text: String,
    pub assignee: String,
    /// `"YYYY-MM-DD"`.
    pub due: Option<String>,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Minutes {
    pub meta: Meta,
    pub stage: Stage,
    pub participants: BTreeMap<String, Participant>,
    pub opinions: BTreeMap<String, Opinion>,
    pub decisions: BTreeMap<String, Decision>,
    pub follow_ups: BTreeMap<String, FollowUp>,
    pub published: bool,
    pub published_at_ms: Option<i64>,
}

fn check_meta(meta: &Meta) -> Result<(), EditError> {
    super::non_empty("topic", &meta.topic)?;
    super::check_date("held_at", &meta.held_at)?;
    super::non_empty("location", &meta.location)
}

/// Writes new minutes at the deliberation stage, unpublished. Called once, by the creator, in
/// the first change.
pub fn init(doc: &mut AutoCommit, meta: &Meta) -> Result<(), EditError> {
    check_meta(meta)?;
    super::init_maps(doc, &[PARTICIPANTS, OPINIONS, DECISIONS, FOLLOW_UPS])?;
    write_meta(doc, meta, None)?;
    let root = automerge::ROOT;
    autosurgeon::reconcile_prop(doc, &root, STAGE, Stage::Deliberate)?;
    autosurgeon::reconcile_prop(doc, &root, PUBLISHED, false)?;
    autosurgeon::reconcile_prop(doc, &root, PUBLISHED_AT_MS, None::<i64>)?;
    Ok(())
}

/// Writes the fields of `meta` that differ from `old` (all of them when there is no `old`).
fn write_meta(doc: &mut AutoCommit, meta: &Meta, old: Option<&Meta>) -> Result<(), EditError> {
    let root = automerge::ROOT;
    let changed = |f: fn(&Meta) -> String| old.is_none_or(|old| f(old) != f(meta));
    if changed(|m| m.form.as_str().into()) {
        autosurgeon::reconcile_prop(doc, &root, FORM, meta.form)?;
    }
    if changed(|m| m.meeting.map_or("", Meeting::as_str).into()) {
        autosurgeon::reconcile_prop(doc, &root, MEETING, meta.meeting)?;
    }
    if changed(|m| m.topic.clone()) {
        autosurgeon::reconcile_prop(doc, &root, TOPIC, &meta.topic)?;
    }
    if changed(|m| m.topic_source.as_str().into()) {
        autosurgeon::reconcile_prop(doc, &root, TOPIC_SOURCE, meta.topic_source)?;
    }
    if changed(|m| m.held_at.clone()) {
        autosurgeon::reconcile_prop(doc, &root, HELD_AT, &meta.held_at)?;
    }
    if changed(|m| m.location.clone()) {
        autosurgeon::reconcile_prop(doc, &root, LOCATION, &meta.location)?;
    }
    Ok(())
}

pub fn hydrate(doc: &impl automerge::ReadDoc) -> Result<Minutes, SchemaError> {
    let doc = &super::Reader::new(doc);
    let meta = Meta {
        form: super::root_value(doc, FORM)?,
        meeting: super::root_value(doc, MEETING)?,
        topic: super::root_value(doc, TOPIC)?,
        topic_source: super::root_value(doc, TOPIC_SOURCE)?,
        held_at: super::root_value(doc, HELD_AT)?,
        location: super::root_value(doc, LOCATION)?,
    };
    super::schema_date(|| HELD_AT.into(), &meta.held_at)?;
    let minutes = Minutes {
        meta,
        stage: super::root_value(doc, STAGE)?,
        participants: super::records(doc, PARTICIPANTS)?,
        opinions: super::records(doc, OPINIONS)?,
        decisions: super::records(doc, DECISIONS)?,
        follow_ups: super::records(doc, FOLLOW_UPS)?,
        published: super::root_value(doc, PUBLISHED)?,
        published_at_ms: super::root_value(doc, PUBLISHED_AT_MS)?,
    };
    if minutes.published != minutes.published_at_ms.is_some() {
        return Err(SchemaError::Invalid {
            path: PUBLISHED_AT_MS.into(),
            reason: "set exactly when the minutes are published".into(),
        });
    }
    for (id, follow_up) in &minutes.follow_ups {
        if let Some(due) = &follow_up.due {
            super::schema_date(|| format!("{FOLLOW_UPS}/{id}/due"), due)?;
        }
    }
    Ok(minutes)
}

fn is_published(doc: &AutoCommit) -> Result<bool, EditError> {
    Ok(super::root_value(doc, PUBLISHED)?)
}

fn refuse_if_published(doc: &AutoCommit) -> Result<(), EditError> {
    if is_published(doc)? {
        Err(EditError::Published)
    } else {
        Ok(())
    }
}

/// Corrects what the minutes are about; refused once published.
pub fn set_meta(doc: &mut AutoCommit, meta: &Meta) -> Result<(), EditError> {
    check_meta(meta)?;
    let old = hydrate(doc)?;
    if old.published {
        return Err(EditError::Published);
    }
    write_meta(doc, meta, Some(&old.meta))
}

/// Moves to a later stage; the stages never go back (seed 004 (七)).
pub fn advance_stage(doc: &mut AutoCommit, to: Stage) -> Result<(), EditError> {
    let current: Stage = super::root_value(doc, STAGE)?;
    if to <= current {
        return Err(super::invalid(
            "stage",
            format!("cannot move from {current} to {to}"),
        ));
    }
    autosurgeon::reconcile_prop(doc, automerge::ROOT, STAGE, to)?;
    Ok(())
}

pub fn add_participant(
    doc: &mut AutoCommit,
    id: &str,
    participant: &Participant,
) -> Result<(), EditError> {
    super::non_empty("name", &participant.name)?;
    super::insert_record(doc, PARTICIPANTS, id, participant)
}

pub fn add_opinion(doc: &mut AutoCommit, id: &str, opinion: &Opinion) -> Result<(), EditError> {
    super::non_empty("by", &opinion.by)?;
    super::non_empty("text", &opinion.text)?;
    super::insert_record(doc, OPINIONS, id, opinion)
}

fn check_decision(decision: &Decision) -> Result<(), EditError> {
    super::non_empty("text", &decision.text)
}

/// Records a decision with its vote tally; refused once published.
pub fn add_decision(doc: &mut AutoCommit, id: &str, decision: &Decision) -> Result<(), EditError> {
    check_decision(decision)?;
    refuse_if_published(doc)?;
    super::insert_record(doc, DECISIONS, id, decision)
}

/// Corrects a decision; refused once published.
pub fn edit_decision(doc: &mut AutoCommit, id: &str, decision: &Decision) -> Result<(), EditError> {
    check_decision(decision)?;
    refuse_if_published(doc)?;
    super::record_obj(doc, DECISIONS, id)?;
    let map = super::root_map(doc, DECISIONS)?;
    autosurgeon::reconcile_prop(doc, &map, id, decision)?;
    Ok(())
}

/// Removes a decision; refused once published.
pub fn remove_decision(doc: &mut AutoCommit, id: &str) -> Result<(), EditError> {
    refuse_if_published(doc)?;
    super::delete_record(doc, DECISIONS, id)
}

/// Adds a follow-up. Allowed after publication: following up is how decisions get done.
pub fn add_follow_up(
    doc: &mut AutoCommit,
    id: &str,
    follow_up: &FollowUp,
) -> Result<(), EditError> {
    super::non_empty("text", &follow_up.text)?;
    super::non_empty("assignee", &follow_up.assignee)?;
    if let Some(due) = &follow_up.due {
        super::check_date("due", due)?;
    }
    super::insert_record(doc, FOLLOW_UPS, id, follow_up)
}

pub fn set_follow_up_done(doc: &mut AutoCommit, id: &str, done: bool) -> Result<(), EditError> {
    super::put_field(doc, FOLLOW_UPS, id, "done", &done)
}

/// Makes the minutes public (公开, seed 001); from then on decisions are fixed.
pub fn publish(doc: &mut AutoCommit, at_ms: i64) -> Result<(), EditError> {
    refuse_if_published(doc)?;
    let root = automerge::ROOT;
    autosurgeon::reconcile_prop(doc, &root, PUBLISHED, true)?;
    autosurgeon::reconcile_prop(doc, &root, PUBLISHED_AT_MS, Some(at_ms))?;
    Ok(())
}

/// Check one record, with the rules of [`hydrate`].
pub(super) fn validate_record(
    doc: &impl autosurgeon::ReadDoc,
    collection: &str,
    id: &str,
) -> Result<(), SchemaError> {
    match collection {
        PARTICIPANTS => super::one_record::<Participant>(doc, collection, id).map(drop),
        OPINIONS => super::one_record::<Opinion>(doc, collection, id).map(drop),
        DECISIONS => super::one_record::<Decision>(doc, collection, id).map(drop),
        FOLLOW_UPS => {
            let Some(follow_up) = super::one_record::<FollowUp>(doc, collection, id)? else {
                return Ok(());
            };
            if let Some(due) = &follow_up.due {
                super::schema_date(|| format!("{FOLLOW_UPS}/{id}/due"), due)?;
            }
            Ok(())
        }
        other => Err(super::unknown_collection(other)),
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use expect_test::expect;
    use proptest::prelude::*;

    use super::super::tests_support::{converges, fork, new_doc};
    use super::*;

    const T0: i64 = 1_762_000_000_000;

    fn meta() -> Meta {
        Meta {
            form: Form::Council,
            meeting: Some(Meeting::PartyResidentsCouncil),
            topic: "3号楼加装电梯费用分摊".into(),
            topic_source: TopicSource::Proposal,
            held_at: "2025-11-08".into(),
            location: "胜利社区会客厅".into(),
        }
    }

    fn new() -> AutoCommit {
        let mut doc = new_doc();
        init(&mut doc, &meta()).expect("init");
        doc
    }

    fn decision(text: &str) -> Decision {
        Decision {
            text: text.into(),
            votes_for: 23,
            votes_against: 4,
            votes_abstain: 1,
            at_ms: T0 + 30,
        }
    }

    fn held() -> AutoCommit {
        let mut doc = new();
        for (id, name, role) in [
            ("p-1", "张建国", "居民代表"),
            ("p-2", "李秀英", "3号楼一层住户"),
            ("p-3", "刘书记", "社区党委书记"),
        ] {
            add_participant(
                &mut doc,
                id,
                &Participant {
                    name: name.into(),
                    role: role.into(),
                },
            )
            .expect("participant");
        }
        add_opinion(
            &mut doc,
            "o-1",
            &Opinion {
                by: "李秀英".into(),
                text: "一层住户不用电梯,不应分摊".into(),
                at_ms: T0 + 10,
            },
        )
        .expect("opinion");
        doc
    }

    #[test]
    fn realistic_minutes() {
        let mut doc = held();
        advance_stage(&mut doc, Stage::Consult).expect("stage");
        advance_stage(&mut doc, Stage::Resolve).expect("stage");
        add_decision(&mut doc, "d-1", &decision("按楼层系数分摊,一层不分摊")).expect("decision");
        add_decision(&mut doc, "d-2", &decision("草稿")).expect("decision");
        remove_decision(&mut doc, "d-2").expect("remove");
        add_follow_up(
            &mut doc,
            "f-1",
            &FollowUp {
                text: "向街道提交加装电梯申请".into(),
                assignee: "刘书记".into(),
                due: Some("2025-11-30".into()),
                done: false,
            },
        )
        .expect("follow up");
        publish(&mut doc, T0 + 40).expect("publish");
        set_follow_up_done(&mut doc, "f-1", true).expect("done after publishing");
        let minutes = hydrate(&doc).expect("hydrate");
        expect![[r#"
            Minutes {
                meta: Meta {
                    form: Council,
                    meeting: Some(
                        PartyResidentsCouncil,
                    ),
                    topic: "3号楼加装电梯费用分摊",
                    topic_source: Proposal,
                    held_at: "2025-11-08",
                    location: "胜利社区会客厅",
                },
                stage: Resolve,
                participants: {
                    "p-1": Participant {
                        name: "张建国",
                        role: "居民代表",
                    },
                    "p-2": Participant {
                        name: "李秀英",
                        role: "3号楼一层住户",
                    },
                    "p-3": Participant {
                        name: "刘书记",
                        role: "社区党委书记",
                    },
                },
                opinions: {
                    "o-1": Opinion {
                        by: "李秀英",
                        text: "一层住户不用电梯,不应分摊",
                        at_ms: 1762000000010,
                    },
                },
                decisions: {
                    "d-1": Decision {
                        text: "按楼层系数分摊,一层不分摊",
                        votes_for: 23,
                        votes_against: 4,
                        votes_abstain: 1,
                        at_ms: 1762000000030,
                    },
                },
                follow_ups: {
                    "f-1": FollowUp {
                        text: "向街道提交加装电梯申请",
                        assignee: "刘书记",
                        due: Some(
                            "2025-11-30",
                        ),
                        done: true,
                    },
                },
                published: true,
                published_at_ms: Some(
                    1762000000040,
                ),
            }
        "#]]
        .assert_debug_eq(&minutes);
        expect!["先议 → 商议 → 决议"].assert_eq(
            &Stage::ALL
                .iter()
                .map(|s| s.label_zh())
                .collect::<Vec<_>>()
                .join(" → "),
        );
    }

    #[test]
    fn set_meta_writes_only_changes() {
        let mut doc = new();
        doc.commit();
        set_meta(
            &mut doc,
            &Meta {
                location: "社区党群服务中心".into(),
                ..meta()
            },
        )
        .expect("meta");
        doc.commit();
        let last = doc.get_last_local_change().expect("change");
        assert_eq!(last.len(), 1, "one op: the location");
        assert_eq!(
            hydrate(&doc).expect("hydrate").meta.location,
            "社区党群服务中心"
        );
    }

    #[test]
    fn edit_errors() {
        let mut doc = held();
        add_decision(&mut doc, "d-1", &decision("决定")).expect("decision");
        add_follow_up(
            &mut doc,
            "f-1",
            &FollowUp {
                text: "跟进".into(),
                assignee: "刘书记".into(),
                due: None,
                done: false,
            },
        )
        .expect("follow up");
        advance_stage(&mut doc, Stage::Consult).expect("stage");
        let follow_up = |text: &str, assignee: &str, due: Option<&str>| FollowUp {
            text: text.into(),
            assignee: assignee.into(),
            due: due.map(Into::into),
            done: false,
        };
        let errors = [
            init(
                &mut new_doc(),
                &Meta {
                    topic: " ".into(),
                    ..meta()
                },
            ),
            init(
                &mut new_doc(),
                &Meta {
                    held_at: "2025-11".into(),
                    ..meta()
                },
            ),
            init(
                &mut new_doc(),
                &Meta {
                    location: "".into(),
                    ..meta()
                },
            ),
            init(&mut doc, &meta()),
            set_meta(
                &mut doc,
                &Meta {
                    topic: "".into(),
                    ..meta()
                },
            ),
            advance_stage(&mut doc, Stage::Consult),
            advance_stage(&mut doc, Stage::Deliberate),
            add_participant(
                &mut doc,
                "p-1",
                &Participant {
                    name: "王".into(),
                    role: "".into(),
                },
            ),
            add_participant(
                &mut doc,
                "p-9",
                &Participant {
                    name: "".into(),
                    role: "".into(),
                },
            ),
            add_opinion(
                &mut doc,
                "o-9",
                &Opinion {
                    by: "".into(),
                    text: "意见".into(),
                    at_ms: T0,
                },
            ),
            add_opinion(
                &mut doc,
                "o-9",
                &Opinion {
                    by: "王".into(),
                    text: " ".into(),
                    at_ms: T0,
                },
            ),
            add_decision(&mut doc, "d-9", &decision("")),
            add_decision(&mut doc, "d-1", &decision("重复")),
            edit_decision(&mut doc, "d-9", &decision("修改")),
            remove_decision(&mut doc, "d-9"),
            add_follow_up(&mut doc, "f-9", &follow_up("", "刘", None)),
            add_follow_up(&mut doc, "f-9", &follow_up("跟进", "", None)),
            add_follow_up(&mut doc, "f-9", &follow_up("跟进", "刘", Some("下周"))),
            set_follow_up_done(&mut doc, "f-9", true),
        ];
        expect![[r#"
            [
                "invalid topic: must not be empty",
                "invalid held_at: \"2025-11\" is not a date YYYY-MM-DD",
                "invalid location: must not be empty",
                "root record \"participants\" already exists",
                "invalid topic: must not be empty",
                "invalid stage: cannot move from consult to consult",
                "invalid stage: cannot move from consult to deliberate",
                "participants record \"p-1\" already exists",
                "invalid name: must not be empty",
                "invalid by: must not be empty",
                "invalid text: must not be empty",
                "invalid text: must not be empty",
                "decisions record \"d-1\" already exists",
                "no decisions record \"d-9\"",
                "no decisions record \"d-9\"",
                "invalid text: must not be empty",
                "invalid assignee: must not be empty",
                "invalid due: \"下周\" is not a date YYYY-MM-DD",
                "no follow_ups record \"f-9\"",
            ]
        "#]]
        .assert_debug_eq(&errors.map(|r| r.expect_err("refused").to_string()));

        edit_decision(&mut doc, "d-1", &decision("修改后的决定")).expect("edit before publishing");
        publish(&mut doc, T0).expect("publish");
        let published = [
            add_decision(&mut doc, "d-2", &decision("新决定")),
            edit_decision(&mut doc, "d-1", &decision("再修改")),
            remove_decision(&mut doc, "d-1"),
            set_meta(&mut doc, &meta()),
            publish(&mut doc, T0 + 1),
        ];
        for result in published {
            assert!(matches!(result, Err(EditError::Published)), "{result:?}");
        }
        assert_eq!(
            hydrate(&doc).expect("hydrate").decisions["d-1"].text,
            "修改后的决定"
        );
    }

    #[test]
    fn schema_errors() {
        let mut doc = new();
        doc.put(automerge::ROOT, PUBLISHED, true).expect("put");
        expect!["published_at_ms: set exactly when the minutes are published"]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
        doc.put(automerge::ROOT, STAGE, "vote").expect("put");
        expect![[r#"stage: unexpected "vote", expected a stage (deliberate | consult | resolve)"#]]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
        doc.delete(automerge::ROOT, TOPIC).expect("delete");
        expect!["missing topic"].assert_eq(&hydrate(&doc).expect_err("schema").to_string());
        assert!(matches!(
            set_meta(&mut doc, &meta()),
            Err(EditError::Schema(SchemaError::Missing { .. }))
        ));
    }

    #[test]
    fn concurrent_opinions_and_decisions_merge() {
        let mut a = held();
        let mut b = fork(&mut a, 2);
        add_opinion(
            &mut a,
            "o-a",
            &Opinion {
                by: "张建国".into(),
                text: "高层住户多分摊".into(),
                at_ms: T0 + 20,
            },
        )
        .expect("opinion");
        add_opinion(
            &mut b,
            "o-b",
            &Opinion {
                by: "网友“老邻居”".into(),
                text: "建议申请政府补贴".into(),
                at_ms: T0 + 21,
            },
        )
        .expect("opinion");
        add_decision(&mut b, "d-1", &decision("申请补贴")).expect("decision");
        a.merge(&mut b).expect("merge");
        let minutes = hydrate(&a).expect("hydrate");
        assert_eq!(minutes.opinions.len(), 3);
        assert_eq!(minutes.decisions.len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_order_converges(order in Just((0..9usize).collect::<Vec<_>>()).prop_shuffle()) {
            converges(held, |doc, i| match i % 3 {
                0 => add_opinion(doc, &format!("o-{i}"), &Opinion {
                    by: "居民".into(),
                    text: format!("意见{i}"),
                    at_ms: T0 + i as i64,
                }).expect("opinion"),
                1 => add_decision(doc, &format!("d-{i}"), &decision(&format!("决定{i}")))
                    .expect("decision"),
                _ => {
                    if hydrate(doc).expect("hydrate").stage < Stage::Resolve {
                        let next = if i < 3 { Stage::Consult } else { Stage::Resolve };
                        advance_stage(doc, next).ok();
                    }
                }
            }, 9, &order, hydrate);
        }
    }
}
