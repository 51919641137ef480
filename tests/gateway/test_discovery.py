"""Discovery ranks capabilities by what a request says, not by their names."""

import pytest

from gateway.registry.discovery import Index, search, stem, tokens
from gateway.registry.capabilities import Capability


def capability(name, display, description, *skills, source="a2a"):
    return Capability(name, {"name": display, "description": description,
                             "skills": [{"id": f"{name}-{i}", "name": s[0], "description": s[1],
                                         "tags": s[2], "examples": s[3]} for i, s in enumerate(skills)]},
                      source=source)


# A registry like a small team's: several cards share words ("PDF", "summary", "report").
REGISTRY = [
    capability("doc-digest", "Document Digest", "Reads long PDF documents and reports and writes a short summary.",
               ("Summarize documents", "Summarizes PDF files, reports and papers",
                ["pdf", "summary", "documents"], ["Summarise this quarterly report", "tl;dr of this paper"])),
    capability("invoice-reader", "Invoice Reader", "Extracts totals, dates and vendors from PDF invoices.",
               ("Extract invoice fields", "Pulls structured fields out of scanned or PDF invoices",
                ["pdf", "invoice", "extraction", "ocr"], ["What is the total on this invoice?"])),
    capability("meeting-notes", "Meeting Notes", "Turns meeting transcripts into notes and action items.",
               ("Summarize meetings", "Summaries of call transcripts with decisions and action items",
                ["meeting", "transcript", "summary"], ["Summarize yesterday's standup call"])),
    capability("polyglot", "Polyglot", "Translates text between English, French, German and Spanish.",
               ("Translate text", "Translation between European languages",
                ["translation", "language"], ["Translate this paragraph into German"])),
    capability("skycast", "SkyCast", "Weather forecasts and current conditions for any city.",
               ("Forecast", "Hourly and daily weather forecast", ["weather", "forecast", "temperature"],
                ["Will it rain in Paris tomorrow?"])),
    capability("code-critic", "Code Critic", "Reviews pull requests and points out bugs and style problems.",
               ("Review code", "Reviews diffs for bugs, security issues and style",
                ["code", "review", "github", "bugs"], ["Review my pull request"])),
    capability("pixel-eye", "Pixel Eye", "Describes images and photos in words.",
               ("Caption images", "Writes captions and alt text for photos and pictures",
                ["image", "photo", "caption", "vision"], ["What is in this photo?"])),
    capability("sql-analyst", "SQL Analyst", "Answers questions about your data by writing SQL.",
               ("Query data", "Turns questions into SQL over the warehouse and explains the results",
                ["sql", "analytics", "data"], ["How many orders did we ship last week?"])),
    capability("mail-drafter", "Mail Drafter", "Drafts polite emails and replies.",
               ("Draft email", "Writes email drafts from bullet points", ["email", "writing"],
                ["Reply to this customer complaint"]), source="native"),
    capability("wenshu", "文书助手", "把中文文档翻译成英文，并生成摘要。",
               ("翻译文档", "中文到英文的文档翻译", ["翻译", "中文"], ["翻译这份合同"])),
]


def top(query, n=1):
    return [h.capability.name for h in search(REGISTRY, query)[:n]]


@pytest.mark.parametrize("query, best", [
    ("summarise a PDF", "doc-digest"),
    ("Summarize this research paper for me", "doc-digest"),
    ("summary of the meeting transcript", "meeting-notes"),
    ("pull the total out of an invoice", "invoice-reader"),
    ("translate this paragraph into German", "polyglot"),
    ("what's the weather in Paris tomorrow", "skycast"),
    ("review my pull request for bugs", "code-critic"),
    ("describe what is in this photo", "pixel-eye"),
    ("how many orders did we ship, answer with SQL", "sql-analyst"),
    ("draft a reply email", "mail-drafter"),
    ("translation", "polyglot"),
    ("skycast", "skycast"),
    ("翻译文档", "wenshu"),
])
def test_the_right_capability_ranks_first(query, best):
    assert top(query) == [best]


def test_cards_that_share_a_word_still_rank_below_the_one_that_matches_the_whole_request():
    hits = search(REGISTRY, "summarise a PDF")
    names = [h.capability.name for h in hits]
    assert names[0] == "doc-digest"
    assert {"invoice-reader", "meeting-notes"} <= set(names[1:])
    assert hits[0].score > hits[1].score


def test_scores_are_positive_and_descending_and_limit_cuts():
    hits = search(REGISTRY, "summary of a document", limit=2)
    assert len(hits) == 2
    assert hits[0].score >= hits[1].score > 0


@pytest.mark.parametrize("query", ["", "   ", "the of a to", "quantum chromodynamics", "!!!"])
def test_a_request_that_matches_nothing_finds_nothing(query):
    assert search(REGISTRY, query) == []


def test_ties_are_ordered_by_name():
    twins = [capability("b-twin", "Twin", "same words"), capability("a-twin", "Twin", "same words")]
    assert [h.capability.name for h in search(twins, "same words")] == ["a-twin", "b-twin"]


def test_an_empty_registry_and_odd_cards_do_not_break_the_index():
    odd = [Capability("odd", {"name": 5, "description": None, "skills": "not a list"}),
           Capability("odder", {"skills": [{"tags": [1, None, "pdf"], "examples": "x"}, "junk"]}),
           Capability("oddest", "not even a dict")]
    assert Index([]).search("pdf") == []
    assert [h.capability.name for h in search(odd, "pdf")] == ["odder"]


def test_spelling_variants_meet_at_one_stem():
    for words in (["summarise", "summarize", "summarization", "summarising", "summarisation"],
                  ["summary", "summaries"],
                  ["translate", "translation", "translator", "translating"],
                  ["image", "images", "imaging"], ["analyse", "analyze", "analysing", "analyses"],
                  ["order", "orders", "ordering", "ordered"]):
        assert len({stem(w) for w in words}) == 1, words


@pytest.mark.parametrize("query, card_says", [("order", "ordering"), ("ordering", "order"),
                                              ("orders", "ordered")])
def test_a_word_finds_cards_that_say_another_form_of_it(query, card_says):
    cards = [capability("shop", "Shop", f"Handles {card_says} of goods."),
             capability("weather", "Weather", "Forecasts rain.")]
    assert [h.capability.name for h in search(cards, query)] == ["shop"]


def test_cjk_text_is_split_into_bigrams():
    assert tokens("翻译文档") == ["翻译", "译文", "文档"]
    assert tokens("PDF摘要") == ["摘要", "pdf"]
