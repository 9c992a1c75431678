"""Long work shows one updating bar in a terminal, and nothing where no one watches (run logs, CI, pipes)."""

from __future__ import annotations

import io

from mlops_assets.core.common.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_bar_that_reaches_the_total():
    screen = Terminal()
    with progress(30, "training", "epoch", stream=screen) as bar:
        for _ in range(30):
            bar.update(1)
    text = screen.getvalue()
    assert "training" in text and "30/30" in text and "100%" in text
    assert text.count("\n") <= 1  # redrawn in place (carriage returns), not a line per step


def test_a_pipe_or_a_log_file_gets_nothing():
    log = io.StringIO()
    with progress(30, "training", "epoch", stream=log) as bar:
        for _ in range(30):
            bar.update(1)
    assert log.getvalue() == ""
