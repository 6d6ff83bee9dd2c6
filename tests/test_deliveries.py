"""service.deliveries: the answer mapping (pure parts), table-driven."""

from __future__ import annotations

import pytest

from deployhook.service.deliveries import Answer, combine


def answer(status: int, result: str, reason: str) -> Answer:
    return Answer(status, {"result": result, "reason": reason})


@pytest.mark.parametrize(("statuses", "worst"), [
    ((200, 200), 200),
    ((200, 202), 202),
    ((202, 409), 409),
    ((409, 500), 500),
    ((500, 200, 202), 500),
    ((403, 202), 403),
])
def test_a_delivery_to_several_targets_gets_the_worst_status(
        statuses: tuple[int, ...], worst: int) -> None:
    answers = {f"t{i}": answer(s, f"r{s}", f"why {s}") for i, s in enumerate(statuses)}
    combined = combine(answers)
    assert combined.status == worst
    assert combined.body["result"] == f"r{worst}"
    assert set(combined.body["targets"]) == set(answers)
    for name, one in answers.items():
        assert combined.body["targets"][name] == {"status": one.status, **one.body}
        assert f"{name}: {one.body['reason']}" in combined.body["reason"]
