"""client.response_topic_left's fix names what is wrong: refused, failed, or unreachable."""

from __future__ import annotations

from infinitic_py.admin import PulsarAdminError
from infinitic_py.client_admin import left_topic_fix


def test_an_unreachable_admin_api_points_at_the_url() -> None:
    for exc in (OSError("Connection refused"), TimeoutError(),
                PulsarAdminError("no answer", status=None)):
        fix = left_topic_fix(exc)
        assert "reachable" in fix and "admin_url" in fix


def test_a_refusal_asks_for_credentials_not_another_url() -> None:
    fix = left_topic_fix(PulsarAdminError("forbidden", status=403))
    assert "credentials" in fix and "admin_url" not in fix


def test_another_http_answer_says_the_status() -> None:
    fix = left_topic_fix(PulsarAdminError("boom", status=500))
    assert "HTTP 500" in fix and "admin_url" not in fix
