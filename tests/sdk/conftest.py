"""The real openai clients pointed at the loopback fake server, shared by the OpenAI tests."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture
def client(fake_openai):
    return openai.OpenAI(base_url=fake_openai.base_url, api_key="test", max_retries=0)


@pytest.fixture
def aclient(fake_openai):
    return openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="test", max_retries=0)
