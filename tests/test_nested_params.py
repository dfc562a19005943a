"""Rails-style nested form keys, as Astria's docs and clients write them (`nested_params.py`)."""

from __future__ import annotations

import pytest

from backends.local.errors import RequestError
from backends.local.nested_params import nest


def test_values_lists_groups_and_both_list_of_hash_styles() -> None:
    items = [
        ("tune[title]", "t"),
        ("tune[tune_ids][]", "1"),
        ("tune[tune_ids][]", "2"),
        ("tune[characteristics][eye_color]", "blue eyes"),
        ("tune[prompt_attributes][callback]", "https://hook"),
        ("tune[prompts_attributes][][text]", "a"),
        ("tune[prompts_attributes][][num_images]", "2"),
        ("tune[prompts_attributes][][text]", "b"),  # a repeated key starts the next prompt
        ("tune[indexed][1][text]", "second"),
        ("tune[indexed][0][text]", "first"),
        ("prompt[text]", "another root: ignored"),
    ]
    assert nest(items, "tune") == {
        "title": "t",
        "tune_ids": ["1", "2"],
        "characteristics": {"eye_color": "blue eyes"},
        "prompt_attributes": {"callback": "https://hook"},
        "prompts_attributes": [{"text": "a", "num_images": "2"}, {"text": "b"}],
        "indexed": [{"text": "first"}, {"text": "second"}],
    }


@pytest.mark.parametrize(
    "items",
    [
        [("tune[a]", "1"), ("tune[a][b]", "2")],
        [("tune[a][]", "1"), ("tune[a][b]", "2")],
        [("tune[a", "1")],
        [("tune[][a]", "1")],
    ],
)
def test_contradictory_or_malformed_keys_are_a_clear_422(items: list[tuple[str, str]]) -> None:
    with pytest.raises(RequestError):
        nest(items, "tune")
