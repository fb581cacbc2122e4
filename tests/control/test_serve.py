"""What `ascl serve` prints about the dashboard: the admin token only where a person reads it."""

from __future__ import annotations

from control.serve import dashboard_url

TOKEN = "ascl_0123456789abcdef01234567_" + "x" * 43


def test_on_a_terminal_the_dashboard_link_signs_in_through_its_fragment():
    url = dashboard_url("http://127.0.0.1:8000", TOKEN, terminal=True)
    assert url == f"http://127.0.0.1:8000/ui/#token={TOKEN}"  # after '#': never sent to a server


def test_printed_to_a_file_the_dashboard_link_carries_no_token():
    url = dashboard_url("http://127.0.0.1:8000", TOKEN, terminal=False)
    assert url.startswith("http://127.0.0.1:8000/ui/ ")
    assert TOKEN not in url
