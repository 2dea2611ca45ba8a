"""nlu/filter_new_words.py drops exactly the lines that would leak a held-out word or message."""

from __future__ import annotations

from nlu.features import Lemmatizer
from nlu.filter_new_words import filter_text

SOURCE = (
    'version: "3.1"\n'
    "nlu:\n"
    "- intent: thanks\n"
    "  examples: |\n"
    "    - благодарю вас\n"
    "    - вы просто волшебники\n"
    "    - волшебник вы\n"
    "- intent: submit_reading\n"
    "  examples: |\n"
    '    - показания [горячей воды]{"entity": "meter_type", "value": "hot_water"} 415\n'
    "    - передаю Показания  счётчика\n"
    "- synonym: hot_water\n"
    "  examples: |\n"
    "    - волшебники\n"
)


def test_lines_with_a_new_word_or_its_lemma_and_held_out_messages_are_dropped() -> None:
    forms = {"волшебники"}
    text, dropped = filter_text(
        SOURCE, forms, {Lemmatizer.lemma(w) for w in forms}, {"передаю показания счетчика"}
    )
    assert dropped == 3
    assert "волшебник" not in text.split("- synonym:")[0]
    assert "передаю" not in text
    assert "благодарю вас" in text
    assert '"value": "hot_water"} 415' in text
    # synonyms are not training lines of an intent: kept
    assert text.endswith("    - волшебники\n")


def test_nothing_to_drop_keeps_the_file_as_it_was() -> None:
    assert filter_text(SOURCE, set(), set()) == (SOURCE, 0)
