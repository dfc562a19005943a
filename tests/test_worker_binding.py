"""A tune stays bound across its prompts and is unbound for any other: on both LoRA paths
(the hot-swap slot and the PEFT adapter), the images are those of a fresh bind, and `binds`
counts one bind per change of tune, not one per prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backends.local.accel import Accel
from tests.worker_fixtures import write_random_tune

pytest.importorskip("torch")

from tests.test_worker_accel import EAGER, engine, image, job


@pytest.mark.slow
@pytest.mark.parametrize("accel", [EAGER, Accel.off()], ids=["slot", "peft"])
def test_a_tune_binds_once_for_its_prompts_and_unbinds_cleanly(
    tmp_path: Path, accel: Accel
) -> None:
    for seed in (1, 2):
        write_random_tune(tmp_path / str(seed), seed=seed)
    mine, other = tmp_path / "1", tmp_path / "2"
    eng = engine(accel)
    base = image(eng, job(None))

    first = image(eng, job(mine, seed=5))
    second = image(eng, job(mine, seed=6))
    again = image(eng, job(mine, seed=5))
    assert eng.binds == 1  # three prompts of one tune: bound once
    assert np.array_equal(first, again) and not np.array_equal(first, second)

    image(eng, job(other))
    assert eng.binds == 2
    assert np.array_equal(image(eng, job(None)), base)  # nothing of either tune is left
    assert np.array_equal(image(eng, job(mine, seed=5)), first)
    assert np.array_equal(image(engine(accel), job(mine, seed=5)), first)  # as a fresh engine
    assert eng.binds == 3
