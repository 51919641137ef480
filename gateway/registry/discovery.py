"""Discovery: rank capabilities by how well their cards match a request in plain words.

BM25 over a weighted bag of words per capability (BM25F-style: a word in the name or a tag
counts more than one in a description), so "summarise a PDF" finds the agent whose skill says
"Summarizes PDF documents" without knowing its name. Words are lower-cased, split on anything
that is not a letter or digit (CJK text into character bigrams), stop words dropped, British
-ise/-yse spellings folded to -ize/-yze, and reduced by the Snowball English stemmer (Porter2:
order, orders, ordering, ordered -> order; summarise, summarize, summarization -> summar).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import snowballstemmer

from .capabilities import Capability

K1 = 1.2
B = 0.75
WEIGHTS = {"name": 3.0, "tags": 2.0, "skill_names": 2.0, "description": 1.0, "skill_descriptions": 1.0,
           "examples": 1.0}

STOP_WORDS = frozenset("""a an and are as at be by can could do does for from have how i in into is it its
me my of on or our please should some that the their them then there these this those to us we what
when which who will with would you your""".split())

# Porter2 keeps British and American spellings apart (summarise -> summari, summarize -> summar).
_BRITISH = re.compile(r"(?<=[a-z]{4})(?:is(?=(?:e|es|ed|ing|er|ers|ation|ations)$)|ys(?=(?:e|es|ed|ing)$))")
_WORD = re.compile(r"[^\W_]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")
_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)       # an index is rebuilt per query: the same card words come back
def stem(word: str) -> str:
    if word.isascii():
        word = _BRITISH.sub(lambda m: m.group()[0] + "z", word)
    return _STEMMER.stemWord(word)


def tokens(text: str) -> list[str]:
    out = []
    for word in _WORD.findall(text.lower()):
        if _CJK.search(word):
            for run in _CJK.findall(word):
                out += [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]
            word = _CJK.sub(" ", word)
            out += [stem(w) for w in word.split() if w not in STOP_WORDS]
        elif word not in STOP_WORDS:
            out.append(stem(word))
    return out


def fields(capability: Capability) -> dict[str, list[str]]:
    """The text of each weighted field of a capability's card."""
    card = capability.card if isinstance(capability.card, dict) else {}
    skills = [s for s in card.get("skills") or [] if isinstance(s, dict)]
    return {
        "name": [capability.name.replace("-", " ").replace("_", " "), _text(card.get("name"))],
        "description": [_text(card.get("description"))],
        "skill_names": [_text(s.get("name")) for s in skills],
        "skill_descriptions": [_text(s.get("description")) for s in skills],
        "tags": [_text(t) for s in skills for t in _list(s.get("tags"))],
        "examples": [_text(e) for s in skills for e in _list(s.get("examples"))],
    }


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class Hit:
    capability: Capability
    score: float


class Index:
    """A BM25 index over a snapshot of the registry. Cheap to build: rebuild it per query."""

    def __init__(self, capabilities: Iterable[Capability]) -> None:
        self.capabilities = list(capabilities)
        self._docs: list[Counter] = []
        for capability in self.capabilities:
            bag: Counter = Counter()
            for field, texts in fields(capability).items():
                for text in texts:
                    for term in tokens(text):
                        bag[term] += WEIGHTS[field]
            self._docs.append(bag)
        self._lengths = [sum(d.values()) for d in self._docs]
        self._average = sum(self._lengths) / len(self._docs) if self._docs else 0.0
        self._df = Counter(term for doc in self._docs for term in doc)

    def idf(self, term: str) -> float:
        n, df = len(self._docs), self._df.get(term, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def search(self, query: str, *, limit: int | None = None) -> list[Hit]:
        """Capabilities that match `query`, best first (ties by name); only positive scores."""
        terms = list(dict.fromkeys(tokens(query)))
        hits = []
        for capability, doc, length in zip(self.capabilities, self._docs, self._lengths):
            score = sum(self._term_score(doc.get(t, 0.0), length, t) for t in terms)
            if score > 0:
                hits.append(Hit(capability, round(score, 4)))
        hits.sort(key=lambda h: (-h.score, h.capability.name))
        return hits if limit is None else hits[:limit]

    def _term_score(self, tf: float, length: float, term: str) -> float:
        if tf == 0:
            return 0.0
        norm = K1 * (1 - B + B * length / self._average) if self._average else K1
        return self.idf(term) * tf * (K1 + 1) / (tf + norm)


def search(capabilities: Iterable[Capability], query: str, *, limit: int | None = None) -> list[Hit]:
    return Index(capabilities).search(query, limit=limit)
