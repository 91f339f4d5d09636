"""A NUL character is no part of any name, email, id or filter, and PostgreSQL refuses it in
text: a request carrying one gets a 422 naming where it was, never a server error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.fixtures.system import EmbeddedSystem


@pytest.mark.parametrize(
    ("path", "params", "where"),
    [
        ("/v1/conflicts", {"field": "email\x00"}, ["query", "field"]),
        ("/v1/conflicts", {"customer_id": "\x00", "limit": "5"}, ["query", "customer_id"]),
        ("/v1/customers/C1%00x", {}, ["path", "customer_id"]),
    ],
)
async def test_a_nul_character_gets_a_422_naming_the_parameter(
    pg_crm: Callable[..., Awaitable[EmbeddedSystem]],
    path: str,
    params: dict[str, str],
    where: list[str],
) -> None:
    system = await pg_crm()

    answer = await system["crm-sync"].get(path, params=params)

    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == where
