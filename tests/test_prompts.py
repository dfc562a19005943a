"""Prompt composition: the `<lora:ID:S> TOKEN CLASS` format and the rules around it."""

from __future__ import annotations

import pytest

from backends.base import DEFAULT_TOKEN, SDXL_BASE_TUNE_ID
from bot.core.prompts import ComposedPrompt, PromptError, TuneRef, compose_prompt

ME = TuneRef(backend_id=42, token=DEFAULT_TOKEN, class_name="man", title="Me")
DOG = TuneRef(backend_id=7, token="zwx", class_name="dog", title="Rex")
OWNED = {ME.backend_id: ME, DOG.backend_id: DOG}


def compose(text: str, active: TuneRef | None = ME, **kwargs: float) -> ComposedPrompt:
    return compose_prompt(text, active=active, owned=OWNED, **kwargs)


def refused(text: str, active: TuneRef | None = ME, owned: dict[int, TuneRef] = OWNED) -> str:
    with pytest.raises(PromptError) as info:
        compose_prompt(text, active=active, owned=owned)
    return info.value.message


def test_composition_format_and_default_strength() -> None:
    prompt = compose("astronaut on the moon")
    assert prompt.text == "<lora:42:0.8> ohwx man astronaut on the moon"
    assert (prompt.tune_id, prompt.strength) == (42, 0.8)
    assert prompt.negative_prompt == ""
    assert prompt.notes == ()
    assert prompt.user_text == "astronaut on the moon"


def test_strength_is_formatted_compactly() -> None:
    assert compose("hiker", default_strength=1.0).text.startswith("<lora:42:1> ")
    assert compose("<lora:42:0.75> hiker").text.startswith("<lora:42:0.75> ")
    assert compose("<lora:42:.5> hiker").strength == 0.5


def test_the_tunes_own_token_and_class_are_used() -> None:
    assert compose("on a skateboard", active=DOG).text == "<lora:7:0.8> zwx dog on a skateboard"


def test_tag_overrides_the_active_model_and_is_removed_from_the_text() -> None:
    prompt = compose("a painting of <LoRA : 7 : 1.1 >, oil on canvas")
    assert prompt.tune_id == 7
    assert prompt.strength == 1.1
    assert prompt.text == "<lora:7:1.1> zwx dog a painting of, oil on canvas"
    assert prompt.text.count("<lora:") == 1


def test_tag_without_strength_uses_the_default() -> None:
    prompt = compose("<lora:7> in the snow", default_strength=0.6)
    assert prompt.text == "<lora:7:0.6> zwx dog in the snow"


def test_tag_works_without_an_active_model() -> None:
    assert compose("<lora:42:1> surfing", active=None).tune_id == 42


def test_strength_out_of_range_is_clamped_with_a_note() -> None:
    prompt = compose("<lora:42:3.5> portrait")
    assert prompt.strength == 2
    assert prompt.text.startswith("<lora:42:2> ")
    assert any("3.5" in note for note in prompt.notes)


@pytest.mark.parametrize("strength", ["abc", "nan", "inf"])
def test_strength_that_is_not_a_number_is_refused(strength: str) -> None:
    assert "0 to 2" in refused(f"<lora:42:{strength}> portrait")


def test_two_lora_tags_are_refused() -> None:
    message = refused("<lora:42:0.8> and <lora:7:0.8> together")
    assert "one personal model" in message.lower()


def test_someone_elses_tune_and_a_made_up_id_get_the_same_answer() -> None:
    strangers = refused("<lora:1234:0.8> portrait")
    nonexistent = refused("<lora:99999999:0.8> portrait")
    base_model = refused(f"<lora:{SDXL_BASE_TUNE_ID}:1> portrait")
    assert strangers == nonexistent == base_model
    assert "your own models" in strangers
    assert "/models" in strangers


def test_a_name_instead_of_an_id_is_refused_like_a_strangers_id() -> None:
    assert refused("<lora:Rex:0.8> portrait") == refused("<lora:1234:0.8> portrait")


def test_no_model_at_all_points_to_train() -> None:
    assert "/train" in refused("astronaut", active=None, owned={})


def test_models_but_none_active_points_to_models() -> None:
    assert "/models" in refused("astronaut", active=None)


def test_empty_prompt_after_the_tag_asks_what_to_imagine() -> None:
    message = refused("<lora:42:1>   ")
    assert "imagine" in message.lower()
    assert "ohwx man" in message


def test_token_and_class_are_not_doubled() -> None:
    assert compose("ohwx man on a beach").text == "<lora:42:0.8> ohwx man on a beach"
    assert compose("portrait of OHWX man").text == "<lora:42:0.8> portrait of OHWX man"


def test_class_word_alone_gets_the_token_not_a_second_class() -> None:
    assert compose("a man on a beach").text == "<lora:42:0.8> a ohwx man on a beach"
    assert compose("a manly beard").text == "<lora:42:0.8> ohwx man a manly beard"


def test_negative_prompt_after_no_flag() -> None:
    prompt = compose("astronaut --no helmet, blurry")
    assert prompt.text == "<lora:42:0.8> ohwx man astronaut"
    assert prompt.negative_prompt == "helmet, blurry"
    assert compose("astronaut --neg helmet").negative_prompt == "helmet"
    assert compose("astronaut —no helmet").negative_prompt == "helmet"  # phone autocorrect


def test_long_negative_is_trimmed_with_a_note() -> None:
    words = ", ".join(f"t{i}" for i in range(60))  # 40 of them fit in 300 chars
    prompt = compose(f"astronaut --no {words}")
    assert len(prompt.negative_prompt.split()) == 40
    assert prompt.negative_prompt.startswith("t0, t1,")
    assert not prompt.negative_prompt.endswith(",")
    assert any("negative" in note.lower() for note in prompt.notes)


def test_negative_over_the_character_cap_is_trimmed() -> None:
    prompt = compose("astronaut --no " + " ".join(["extraordinarilylongword"] * 20))
    assert 0 < len(prompt.negative_prompt) <= 300
    assert prompt.notes


def test_sd15_embeddings_are_removed_with_a_note() -> None:
    prompt = compose(
        "portrait --no (EasyNegative:1.2), blurry, embedding:badhandv4, bad-hands-5, "
        "ng_deepnegative_v1_75t,, lowres, (verybadimagenegative_v1.3:0.8)"
    )
    assert prompt.negative_prompt == "blurry, lowres"
    note = next(n for n in prompt.notes if "SD1.5" in n)
    assert "EasyNegative" in note
    assert "badhandv4" in note


def test_words_that_merely_contain_an_embedding_name_stay() -> None:
    assert compose("portrait --no not-easynegative-ish").negative_prompt == "not-easynegative-ish"


def test_long_prompt_gets_a_tip_but_still_works() -> None:
    text = " ".join(["very"] * 14) + " detailed cinematic portrait"
    prompt = compose(text)
    assert prompt.text.endswith("cinematic portrait")
    assert any("ohwx man as an astronaut" in note for note in prompt.notes)
    assert compose("cinematic portrait").notes == ()


def test_other_tags_are_removed_with_a_note_and_cannot_be_rebuilt() -> None:
    prompt = compose("portrait <faceid:555:1> <hypernet:x:0.5> in a suit")
    assert prompt.text == "<lora:42:0.8> ohwx man portrait in a suit"
    assert any("<faceid:555:1>" in note for note in prompt.notes)
    smuggled = compose("x <lo<a:b>ra:1234:1> y")
    assert smuggled.tune_id == 42
    assert smuggled.text.count("<") == 1
    assert "1234" not in smuggled.text.split(">", 1)[0]


def test_lora_tag_inside_the_negative_still_counts_as_the_one_tag() -> None:
    assert "one personal model" in refused("<lora:42> a --no <lora:7>").lower()
    assert "your own models" in refused("portrait --no <lora:1234:1>")
