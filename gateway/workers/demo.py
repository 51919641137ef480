"""Two deterministic native agents (no LLM) that `topicbridge serve --demo` runs in the gateway
process, each a capability served with the worker SDK (shipped with the package, so an
installed `topicbridge serve --demo` has them too):

    echo        answers with the text it was sent
    word-stats  counts words, sentences and characters, and quotes the first sentence; sent no
                text, it asks for some (INPUT_REQUIRED) and counts the answer (multi-turn)

Run them against any gateway's backend yourself with `workers(backend)` and `start()` each.
"""

from __future__ import annotations

import json
import re

from .worker import TaskContext, Worker


def _card(name: str, description: str, skill: str, tags: list[str], examples: list[str]) -> dict:
    return {"name": name, "description": description, "version": "1.0.0",
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
            "skills": [{"id": skill, "name": skill, "description": description, "tags": tags,
                        "examples": examples}]}


ECHO_CARD = _card("echo", "Echoes the text it is sent, unchanged.", "echo",
                  ["echo", "text", "test"], ["hello there", "repeat after me: ping"])
WORD_STATS_CARD = _card("word-stats", "Counts words, sentences and characters of a text and returns "
                        "its first sentence as a one-line summary.", "word-stats",
                        ["text", "count", "words", "summarise", "summary"],
                        ["how many words are in this paragraph?", "summarise this text in one line"])


async def echo(task: TaskContext) -> None:
    await task.complete(text=task.text)


async def word_stats(task: TaskContext) -> None:
    text = task.text.strip()
    if not text:        # ask; the caller answers with a message naming this task (task.turn 1)
        await task.require_input("Which text should I count?")
        return
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
    stats = {"words": len(text.split()), "sentences": len(sentences), "characters": len(text),
             "first_sentence": sentences[0] if sentences else ""}
    await task.complete(text=json.dumps(stats))


def workers(backend) -> list[Worker]:
    return [Worker(backend, "echo", echo, card=ECHO_CARD),
            Worker(backend, "word-stats", word_stats, card=WORD_STATS_CARD)]
