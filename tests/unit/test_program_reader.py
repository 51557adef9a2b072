"""Reading program documents safely: YAML aliases are bounded (the alias bombs of issue 14 are
refused at once, naming the limit), and services read the canonical JSON only."""

from __future__ import annotations

import tracemalloc

import pytest

from referrals.programs.document import ProgramInvalid, from_canonical, parse_document
from referrals.programs.reader import MAX_ALIASES, MAX_EXPANDED, MAX_NESTING


def alias_bomb(levels: int, width: int = 9) -> str:
    """The "billion laughs": each level lists the previous one `width` times."""
    lines = ['a0: &a0 ["lol"]']
    for n in range(1, levels + 1):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def problem(text: str) -> tuple[str, str]:
    with pytest.raises(ProgramInvalid) as caught:
        parse_document(text, "bomb.yaml")
    [found] = caught.value.problems
    return found


@pytest.mark.parametrize("levels", [6, 9])
def test_an_alias_bomb_is_refused_where_it_passes_the_limit(levels: int) -> None:
    tracemalloc.start()
    try:
        where, message = problem(alias_bomb(levels))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Nine to the sixth is 531,441 values of 4 characters: past the limit at level 6.
    assert where == "bomb.yaml:7:20"
    assert message == (
        f"is not valid YAML: with its aliases (*name) written out, the document holds more "
        f"than {MAX_EXPANDED} nodes and characters (the limit)"
    )
    assert peak < 2_000_000  # nothing was written out (the 6-level bomb made a 14 MB message)


def test_more_aliases_than_the_limit_are_refused_however_small() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    assert problem(text)[1] == (
        f"is not valid YAML: more than {MAX_ALIASES} aliases (the limit in a document)"
    )


def test_an_alias_inside_the_node_it_names_is_refused() -> None:
    assert problem("a: &a [1, *a]\n") == (
        "bomb.yaml:1:11",
        "is not valid YAML: an alias may not refer to a node containing it",
    )


def test_a_few_aliases_are_written_out_as_usual() -> None:
    text = "lead: &lead {subject: Hi, text: Bye}\nwon: *lead\nrewarded: *lead\n"
    data = parse_document(text)
    assert data["won"] == data["rewarded"] == {"subject": "Hi", "text": "Bye"}


def test_the_canonical_form_services_read_is_json_only() -> None:
    with pytest.raises(ProgramInvalid) as caught:
        from_canonical(alias_bomb(9))
    assert caught.value.problems == [("<canonical>:1:1", "is not valid JSON: Expecting value")]


def test_a_document_nesting_past_the_limit_is_refused_before_the_parsers_recurse() -> None:
    deep = "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1)
    message = f"nests deeper than {MAX_NESTING} levels (the limit)"
    assert problem('{"a": ' + deep[1:-1] + "}") == ("bomb.yaml", message)
    assert problem("a: " + deep[1:-1]) == ("bomb.yaml:1:35", f"is not valid YAML: {message}")
    # Brackets inside strings are text, not nesting.
    assert parse_document('{"a": "' + "[" * 100 + '"}') == {"a": "[" * 100}
    ok = "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)
    assert parse_document('{"a": ' + ok + "}") and parse_document("a: " + ok)
