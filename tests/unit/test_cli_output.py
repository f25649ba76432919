"""The CLI's Rich consoles print text as it is: a fingerprint's ":CD:" or ":AB:" stays hex
(Rich's default emoji codes turned it into 💿 and 🆎, so a printed fingerprint never
matched)."""

from __future__ import annotations

from dockyard.cli import output


def test_emoji_codes_in_output_stay_text() -> None:
    for console in (output.console, output.err_console):
        with console.capture() as captured:
            console.print("SHA-256 EF:CD:58:AB:12:OK:")
        assert captured.get().strip() == "SHA-256 EF:CD:58:AB:12:OK:"
