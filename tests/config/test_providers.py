"""The provider table is the one place a provider is written down."""

from __future__ import annotations

import pytest

from config import KEYED_PROVIDERS, PROVIDERS, TABLE, spec
from worker.app import queue_for
from worker.chat.builder import FAMILIES, build_registry
from worker.chat.registry import route


@pytest.mark.parametrize("row", TABLE, ids=lambda r: r.name)
def test_each_row_is_routed_by_its_prefix_to_its_own_queue(row):
    assert route(f"{row.prefix}/some-model") == (row.name, "some-model")
    assert queue_for(row.name) == f"chat.{row.name}"


@pytest.mark.parametrize("row", [r for r in TABLE if not r.offline], ids=lambda r: r.name)
def test_each_network_row_names_a_wire_family_the_builder_speaks(row):
    assert row.family in FAMILIES


def test_the_names_lists_follow_the_table():
    assert tuple(r.name for r in TABLE) == PROVIDERS
    assert tuple(r.name for r in TABLE if r.keyed) == KEYED_PROVIDERS
    assert spec("ollama").concurrency == 1
    assert spec("mock").offline


def test_settings_take_their_default_urls_and_limits_from_the_table(settings_for):
    settings = settings_for({})
    for row in TABLE:
        if not row.offline:
            assert settings.urls[row.name] == row.url
        assert settings.limits_for(row.name).concurrency == row.concurrency


def test_a_keyed_row_is_registered_exactly_when_its_key_is_set(settings_for, tmp_path):
    none = {f"{p.upper()}_KEY_FILE": str(tmp_path / "absent") for p in KEYED_PROVIDERS}
    registered = build_registry(settings_for(none)).providers()
    assert sorted(registered) == sorted(r.name for r in TABLE if not r.keyed)
    keyed = {**none, "KIMI_API_KEY": "test-kimi-key-0123456789"}
    assert "kimi" in build_registry(settings_for(keyed)).providers()
