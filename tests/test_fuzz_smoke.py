"""A short smoke run of every fuzz target: random inputs and mutations of its seeds.

The real runs use atheris (`python fuzz/<target>.py`); this keeps the targets importable
and their invariants true on every test run.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
TARGETS = sorted(FUZZ.glob("fuzz_*.py"))
RUNS = 1500


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mutate(rnd: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rnd.randint(1, 4)):
        choice = rnd.random()
        if data and choice < 0.5:
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        elif data and choice < 0.75:
            del data[rnd.randrange(len(data)) :]
        else:
            data += rnd.randbytes(rnd.randint(1, 16))
    return bytes(data)


@pytest.mark.parametrize("path", TARGETS, ids=[p.stem for p in TARGETS])
def test_fuzz_target_invariant_holds_on_a_smoke_run(path: Path) -> None:
    module = _load(path)
    doc = (module.__doc__ or "").strip()
    assert doc.startswith("Invariant"), "a fuzz target states its invariant first"
    rnd = random.Random(path.stem)
    seeds: list[bytes] = list(getattr(module, "SEEDS", [])) or [b""]
    for i in range(RUNS):
        data = _mutate(rnd, rnd.choice(seeds)) if i % 2 else rnd.randbytes(rnd.randint(0, 300))
        module.test_one_input(data)
