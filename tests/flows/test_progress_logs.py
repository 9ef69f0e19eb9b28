"""Log lines of the long-running commands: no traceback without --debug, repeats held back."""

from __future__ import annotations

import io
import logging

from twinflow.flows.logs import Calm, setup_logging


def _record(msg: str, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("asyncua.client", logging.ERROR, __file__, 1, msg, None, info)


def test_a_traceback_becomes_one_line_and_repeats_within_a_minute_are_counted() -> None:
    try:
        raise ConnectionError("Connection is closed")
    except ConnectionError as exc:
        error = exc
    calm = Calm(repeat_s=60.0)
    first = _record("Publish iteration crashed", error)
    assert calm.filter(first)
    assert first.getMessage() == "Publish iteration crashed (ConnectionError: Connection is closed)"
    assert first.exc_info is None
    assert not calm.filter(_record("Publish iteration crashed", error))
    assert not calm.filter(_record("Publish iteration crashed", error))
    assert calm.filter(_record("another line"))
    calm.repeat_s = 0.0  # the minute is over
    again = _record("Publish iteration crashed", error)
    assert calm.filter(again)
    assert again.getMessage().endswith("(and 2 like it in the last minute)")


def test_setup_logging_keeps_other_handlers_and_shows_no_traceback() -> None:
    root = logging.getLogger()
    other = logging.StreamHandler(io.StringIO())
    root.addHandler(other)
    out = io.StringIO()
    undo_first = setup_logging(stream=out)
    undo = setup_logging(stream=out)  # a second call replaces its own handler only
    try:
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("twinflow.test").exception("it failed")
        logging.getLogger("asyncua.test").info("chatter")
    finally:
        undo()
        undo_first()
        root.removeHandler(other)
    assert not [h for h in root.handlers if type(h).__name__ == "_Handler"]
    text = out.getvalue()
    assert text.count("it failed (ValueError: bad)") == 1
    assert "Traceback" not in text and "chatter" not in text
