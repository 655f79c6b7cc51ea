"""What the observability tests share: fresh readiness answers, and the log as written."""

from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings

from crm.observability import health, logs


@pytest.fixture(autouse=True)
def fresh_readiness() -> Iterator[None]:
    health.forget_readiness()
    yield
    health.forget_readiness()


@pytest.fixture
def log_output() -> Iterator[Callable[..., io.StringIO]]:
    """``log_output(format="json")``: configure logging as the settings would for
    that format, with the request log on, and return what the console handler writes."""

    def configure(format: str = "text", request_log: bool = True) -> io.StringIO:
        logging.config.dictConfig(
            logs.logging_config(format=format, level="WARNING", request_log=request_log)
        )
        buffer = io.StringIO()
        console = next(h for h in logging.getLogger().handlers if h.name == "console")
        console.setStream(buffer)
        return buffer

    yield configure
    logging.config.dictConfig(settings.LOGGING)
