"""The fideslang taxonomy as plain key sets.

fideslang's own models accept any string as a key, so a misspelt category would pass them silently;
we check every key ourselves and suggest the nearest real one.
"""
from __future__ import annotations

import difflib
from functools import lru_cache


@lru_cache(maxsize=1)
def _keys() -> tuple[frozenset[str], frozenset[str]]:
    from fideslang.default_taxonomy import DEFAULT_TAXONOMY

    return (
        frozenset(c.fides_key for c in DEFAULT_TAXONOMY.data_category),
        frozenset(u.fides_key for u in DEFAULT_TAXONOMY.data_use),
    )


def data_categories() -> frozenset[str]:
    return _keys()[0]


def data_uses() -> frozenset[str]:
    return _keys()[1]


def _check(key: str, known: frozenset[str], kind: str) -> str:
    if key in known:
        return key
    near = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise ValueError(f"unknown fideslang {kind} '{key}'{hint}")


def check_category(key: str) -> str:
    return _check(key, data_categories(), "data category")


def check_use(key: str) -> str:
    return _check(key, data_uses(), "data use")


def covered_by(key: str, declared: set[str] | frozenset[str]) -> bool:
    """A key is covered when it or one of its ancestors is declared (user.contact covers user.contact.email)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in declared for i in range(1, len(parts) + 1))
