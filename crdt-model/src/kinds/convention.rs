//! Conventions (居民公约, 村规民约, 专项规约, 住户守则): the articles residents agree to live by,
//! edited together as text, with revision notes and the record of their adoption.
//!
//! A convention is drafted and revised by the community "according to law and procedure"
//! (依法依规按程序要求制定修订, seed 000 §二(三); also 003 §三(三)), adopted by the residents'
//! (representatives') meeting (居村民(代表)会议"决议", seed 004 (七)), and filed with the level
//! above. Filing is an attestation over exact heads (see the attestation code); this module
//! gives [`articles_text`], the rendering the "changed since filing" diff is computed on.
//!
//! Each article is an Automerge text object, so two people editing different sentences of the
//! same article, or different articles, merge without losing either edit. Text is edited with
//! Automerge's own `update_text`: autosurgeon 0.14's `Text::update`/`splice` count bytes where
//! automerge counts code points, which breaks on Chinese text (pinned by a test below).

use std::collections::BTreeMap;

use automerge::{AutoCommit, ObjType, Value, transaction::Transactable};
use autosurgeon::{Hydrate, ReadDoc, Reconcile, Text};

use super::{EditError, SchemaError, UnknownValue};

const ARTICLES: &str = "articles";
const REVISIONS: &str = "revisions";
const ADOPTION: &str = "adoption";

string_enum! {
    /// The body that adopted the convention (seed 004 (七): 居村民(代表)会议).
    pub enum Method ("an adoption method") {
        ResidentsMeeting = "residents-meeting", "居民会议";
        RepresentativesMeeting = "representatives-meeting", "居民代表会议";
        VillagersMeeting = "villagers-meeting", "村民会议";
        VillagerRepresentativesMeeting = "villager-representatives-meeting", "村民代表会议";
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize)]
pub struct Article {
    /// The article's place in the convention (第N条); articles are shown in this order.
    pub number: u32,
    pub title: String,
    /// Serialized as a plain string.
    #[serde(serialize_with = "text_as_str")]
    pub text: Text,
}

fn text_as_str<S: serde::Serializer>(text: &Text, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(text.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Revision {
    /// What was changed and why.
    pub note: String,
    /// Key id of the author.
    pub by: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Adoption {
    pub at_ms: i64,
    pub method: Method,
    pub votes_for: u32,
    pub votes_against: u32,
    pub votes_abstain: u32,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Convention {
    pub articles: BTreeMap<String, Article>,
    pub revisions: BTreeMap<String, Revision>,
    pub adoption: Option<Adoption>,
}

impl Convention {
    /// Articles in order of number (then id, should two share a number after a merge).
    pub fn ordered(&self) -> Vec<(&str, &Article)> {
        let mut articles: Vec<(&str, &Article)> = self
            .articles
            .iter()
            .map(|(id, a)| (id.as_str(), a))
            .collect();
        articles.sort_by_key(|(id, a)| (a.number, *id));
        articles
    }
}

/// Writes the empty convention. Called once, by the creator, in the first change.
pub fn init(doc: &mut AutoCommit) -> Result<(), EditError> {
    super::init_maps(doc, &[ARTICLES, REVISIONS])
}

pub fn hydrate(doc: &impl automerge::ReadDoc) -> Result<Convention, SchemaError> {
    let doc = &super::Reader::new(doc);
    let adoption = match doc.get(&automerge::ROOT, ADOPTION) {
        Ok(None) => None,
        Ok(Some(_)) => super::root_value(doc, ADOPTION)?,
        Err(e) => {
            return Err(SchemaError::Invalid {
                path: ADOPTION.into(),
                reason: e.to_string(),
            });
        }
    };
    Ok(Convention {
        articles: super::records(doc, ARTICLES)?,
        revisions: super::records(doc, REVISIONS)?,
        adoption,
    })
}

/// The whole text in article order, one block per article, as residents read it and as the
/// diff since filing compares it.
pub fn articles_text(convention: &Convention) -> String {
    convention
        .ordered()
        .iter()
        .map(|(_, a)| format!("第{}条 {}\n{}\n", a.number, a.title, a.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Adds an article. Its number must be at least 1 and not already used.
pub fn add_article(
    doc: &mut AutoCommit,
    id: &str,
    number: u32,
    title: &str,
    text: &str,
) -> Result<(), EditError> {
    super::non_empty("title", title)?;
    if number == 0 {
        return Err(super::invalid("number", "articles are numbered from 1"));
    }
    let articles: BTreeMap<String, Article> = super::records(doc, ARTICLES)?;
    if let Some((other, _)) = articles.iter().find(|(_, a)| a.number == number) {
        return Err(super::invalid(
            "number",
            format!("article {number} already exists ({other})"),
        ));
    }
    let article = Article {
        number,
        title: title.to_owned(),
        text: Text::with_value(text),
    };
    super::insert_record(doc, ARTICLES, id, &article)
}

/// Replaces an article's text by diffing it against the current text, so that only the changed
/// characters are written and a concurrent edit elsewhere in the article survives.
pub fn edit_article_text(doc: &mut AutoCommit, id: &str, new_text: &str) -> Result<(), EditError> {
    let article = super::record_obj(doc, ARTICLES, id)?;
    let text = match doc.get(&article, "text")? {
        Some((Value::Object(ObjType::Text), text)) => text,
        other => {
            return Err(SchemaError::WrongType {
                path: format!("{ARTICLES}/{id}/text"),
                expected: "text",
                found: other.map_or("nothing".into(), |(v, _)| super::describe(&v)),
            }
            .into());
        }
    };
    doc.update_text(&text, new_text)?;
    Ok(())
}

pub fn set_article_title(doc: &mut AutoCommit, id: &str, title: &str) -> Result<(), EditError> {
    super::non_empty("title", title)?;
    super::put_field(doc, ARTICLES, id, "title", &title)
}

pub fn remove_article(doc: &mut AutoCommit, id: &str) -> Result<(), EditError> {
    super::delete_record(doc, ARTICLES, id)
}

/// Records a revision note (修订说明).
pub fn add_revision(
    doc: &mut AutoCommit,
    id: &str,
    note: &str,
    by: &str,
    at_ms: i64,
) -> Result<(), EditError> {
    super::non_empty("note", note)?;
    super::non_empty("by", by)?;
    let revision = Revision {
        note: note.to_owned(),
        by: by.to_owned(),
        at_ms,
    };
    super::insert_record(doc, REVISIONS, id, &revision)
}

/// Records the adoption vote, replacing an earlier one (a revised convention is adopted
/// again). A convention without articles cannot be adopted, and a vote with no more votes for
/// than against did not adopt anything; the legal quorum is for the meeting to check.
pub fn adopt(doc: &mut AutoCommit, adoption: &Adoption) -> Result<(), EditError> {
    if adoption.votes_for <= adoption.votes_against {
        return Err(super::invalid(
            "votes_for",
            format!(
                "{} for and {} against is not an adoption",
                adoption.votes_for, adoption.votes_against
            ),
        ));
    }
    let articles = super::root_map(doc, ARTICLES)?;
    if doc.map_range(&articles, ..).next().is_none() {
        return Err(super::invalid("articles", "the convention has no articles"));
    }
    autosurgeon::reconcile_prop(doc, automerge::ROOT, ADOPTION, adoption)?;
    Ok(())
}

/// Check one record, with the rules of [`hydrate`].
pub(super) fn validate_record(
    doc: &impl autosurgeon::ReadDoc,
    collection: &str,
    id: &str,
) -> Result<(), SchemaError> {
    match collection {
        ARTICLES => super::one_record::<Article>(doc, collection, id).map(drop),
        REVISIONS => super::one_record::<Revision>(doc, collection, id).map(drop),
        other => Err(super::unknown_collection(other)),
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use proptest::prelude::*;

    use super::super::tests_support::{converges, fork, new_doc};
    use super::*;

    const T0: i64 = 1_762_000_000_000;

    fn new() -> AutoCommit {
        let mut doc = new_doc();
        init(&mut doc).expect("init");
        doc
    }

    /// Three articles of a residents' convention.
    fn drafted() -> AutoCommit {
        let mut doc = new();
        add_article(
            &mut doc,
            "a-env",
            2,
            "爱护环境",
            "垃圾分类投放,不乱扔杂物,不占用楼道。",
        )
        .expect("add");
        add_article(
            &mut doc,
            "a-general",
            1,
            "总则",
            "为建设和谐社区,经居民会议讨论通过,制定本公约。",
        )
        .expect("add");
        add_article(&mut doc, "a-pets", 3, "文明养犬", "出门拴绳,及时清理粪便。").expect("add");
        doc
    }

    fn adoption() -> Adoption {
        Adoption {
            at_ms: T0 + 100,
            method: Method::RepresentativesMeeting,
            votes_for: 41,
            votes_against: 2,
            votes_abstain: 3,
            note: "第三届居民代表会议第二次会议".into(),
        }
    }

    #[test]
    fn realistic_convention() {
        let mut doc = drafted();
        edit_article_text(
            &mut doc,
            "a-env",
            "垃圾分类投放,不乱扔杂物,不占用楼道和消防通道。",
        )
        .expect("edit");
        set_article_title(&mut doc, "a-pets", "文明养宠").expect("title");
        add_revision(
            &mut doc,
            "r-1",
            "第二条增加消防通道",
            "key-wangfang",
            T0 + 50,
        )
        .expect("revision");
        adopt(&mut doc, &adoption()).expect("adopt");
        let convention = hydrate(&doc).expect("hydrate");
        expect![[r#"
            第1条 总则
            为建设和谐社区,经居民会议讨论通过,制定本公约。

            第2条 爱护环境
            垃圾分类投放,不乱扔杂物,不占用楼道和消防通道。

            第3条 文明养宠
            出门拴绳,及时清理粪便。
        "#]]
        .assert_eq(&articles_text(&convention));
        expect![[r#"
            (
                {
                    "r-1": Revision {
                        note: "第二条增加消防通道",
                        by: "key-wangfang",
                        at_ms: 1762000000050,
                    },
                },
                Some(
                    Adoption {
                        at_ms: 1762000000100,
                        method: RepresentativesMeeting,
                        votes_for: 41,
                        votes_against: 2,
                        votes_abstain: 3,
                        note: "第三届居民代表会议第二次会议",
                    },
                ),
            )
        "#]]
        .assert_debug_eq(&(&convention.revisions, &convention.adoption));
        expect![[r#"
            Article {
                number: 3,
                title: "文明养宠",
                text: Text {
                    value: "出门拴绳,及时清理粪便。",
                },
            }
        "#]]
        .assert_debug_eq(&convention.articles["a-pets"]);
        expect![[r#"{"number":3,"title":"文明养宠","text":"出门拴绳,及时清理粪便。"}"#]]
            .assert_eq(&serde_json::to_string(&convention.articles["a-pets"]).expect("json"));
        expect!["居民代表会议"].assert_eq(Method::RepresentativesMeeting.label_zh());

        remove_article(&mut doc, "a-pets").expect("remove");
        assert_eq!(hydrate(&doc).expect("hydrate").articles.len(), 2);
    }

    #[test]
    fn edit_errors() {
        let mut doc = drafted();
        let mut empty = new();
        add_revision(&mut doc, "r-1", "初稿", "key-1", T0).expect("revision");
        let errors = [
            add_article(&mut doc, "a-x", 4, " ", "正文"),
            add_article(&mut doc, "a-x", 0, "标题", "正文"),
            add_article(&mut doc, "a-x", 2, "标题", "正文"),
            add_article(&mut doc, "a-env", 4, "标题", "正文"),
            add_article(&mut doc, "", 4, "标题", "正文"),
            edit_article_text(&mut doc, "a-x", "正文"),
            set_article_title(&mut doc, "a-env", ""),
            set_article_title(&mut doc, "a-x", "标题"),
            remove_article(&mut doc, "a-x"),
            add_revision(&mut doc, "r-2", "", "key-1", T0),
            add_revision(&mut doc, "r-2", "修订", "", T0),
            add_revision(&mut doc, "r-1", "修订", "key-1", T0),
            adopt(
                &mut doc,
                &Adoption {
                    votes_for: 10,
                    votes_against: 10,
                    ..adoption()
                },
            ),
            adopt(&mut empty, &adoption()),
            edit_article_text(&mut AutoCommit::new(), "a-env", "x"),
        ];
        expect![[r#"
            [
                "invalid title: must not be empty",
                "invalid number: articles are numbered from 1",
                "invalid number: article 2 already exists (a-env)",
                "articles record \"a-env\" already exists",
                "invalid id: must not be empty",
                "no articles record \"a-x\"",
                "invalid title: must not be empty",
                "no articles record \"a-x\"",
                "no articles record \"a-x\"",
                "invalid note: must not be empty",
                "invalid by: must not be empty",
                "revisions record \"r-1\" already exists",
                "invalid votes_for: 10 for and 10 against is not an adoption",
                "invalid articles: the convention has no articles",
                "document does not match its schema: missing articles",
            ]
        "#]]
        .assert_debug_eq(&errors.map(|r| r.expect_err("refused").to_string()));
    }

    #[test]
    fn schema_errors() {
        let mut doc = drafted();
        let articles = super::super::root_map(&doc, ARTICLES).expect("articles");
        let (_, env) = doc.get(&articles, "a-env").ok().flatten().expect("article");
        doc.put(&env, "text", "plain string, not text")
            .expect("put");
        expect!["articles/a-env: unexpected string"]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
        expect![[r#"document does not match its schema: articles/a-env/text: expected text, found scalar "plain string, not text""#]]
            .assert_eq(&edit_article_text(&mut doc, "a-env", "x").expect_err("schema").to_string());

        let mut doc = drafted();
        doc.put(automerge::ROOT, ADOPTION, "yes").expect("put");
        expect!["adoption: unexpected string"]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
    }

    #[test]
    fn two_people_edit_different_articles() {
        let mut a = drafted();
        let mut b = fork(&mut a, 2);
        edit_article_text(&mut a, "a-env", "垃圾分类投放。").expect("edit");
        edit_article_text(&mut b, "a-pets", "出门拴绳,及时清理粪便,不在公共区域放养。")
            .expect("edit");
        add_article(&mut b, "a-parking", 4, "停车秩序", "车辆停放在划定车位。").expect("add");
        a.merge(&mut b).expect("merge");
        let c = hydrate(&a).expect("hydrate");
        assert_eq!(c.articles["a-env"].text.as_str(), "垃圾分类投放。");
        assert_eq!(
            c.articles["a-pets"].text.as_str(),
            "出门拴绳,及时清理粪便,不在公共区域放养。"
        );
        assert_eq!(c.ordered().len(), 4);
    }

    #[test]
    fn concurrent_edits_to_one_article_merge() {
        let mut a = drafted();
        let mut b = fork(&mut a, 2);
        // One inserts at the start, the other changes the end, of the same article.
        edit_article_text(
            &mut a,
            "a-env",
            "全体居民应当垃圾分类投放,不乱扔杂物,不占用楼道。",
        )
        .expect("edit");
        edit_article_text(
            &mut b,
            "a-env",
            "垃圾分类投放,不乱扔杂物,不占用楼道和消防通道。",
        )
        .expect("edit");
        a.merge(&mut b).expect("merge");
        expect!["全体居民应当垃圾分类投放,不乱扔杂物,不占用楼道和消防通道。"].assert_eq(
            hydrate(&a).expect("hydrate").articles["a-env"]
                .text
                .as_str(),
        );
    }

    /// Regression: autosurgeon 0.14's `Text::update` hands byte offsets to Automerge, which
    /// counts code points, so it fails on Chinese text. `edit_article_text` must not use it.
    #[test]
    fn autosurgeon_text_update_breaks_on_chinese() {
        let mut doc = drafted();
        let articles = super::super::root_map(&doc, ARTICLES).expect("articles");
        let (_, env) = doc.get(&articles, "a-env").ok().flatten().expect("article");
        let mut text: Text = autosurgeon::hydrate_prop(&doc, &env, "text").expect("text");
        text.update("垃圾分类投放,不乱扔杂物,不占用楼道和消防通道。");
        assert!(autosurgeon::reconcile_prop(&mut doc, &env, "text", &text).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_order_converges(order in Just((0..9usize).collect::<Vec<_>>()).prop_shuffle()) {
            converges(drafted, |doc, i| {
                let current = hydrate(doc).expect("hydrate").articles["a-env"].text.as_str().to_owned();
                match i % 3 {
                    0 => edit_article_text(doc, "a-env", &format!("{i}号{current}")).expect("edit"),
                    1 => edit_article_text(doc, "a-env", &format!("{current}第{i}句。")).expect("edit"),
                    _ => add_revision(doc, &format!("r-{i}"), "修订", "key-1", T0 + i as i64)
                        .expect("revision"),
                }
            }, 9, &order, hydrate);
        }
    }
}
