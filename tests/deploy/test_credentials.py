"""Credential values stay out of repr, records and log lines."""

from __future__ import annotations

import logging
import pickle

import pytest

from green_deploy.deploy.credentials import Credentials, RedactingFilter, redact, redacting_logs
from green_deploy.errors import ConfigError

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")


def test_repr_names_the_keys_and_never_the_values():
    credentials = Credentials({"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET}, KEYS, "aws")
    text = repr(credentials) + str(credentials) + f"{credentials}"
    assert "aws_access_key_id=***" in text and KEY_ID not in text and SECRET not in text
    assert credentials.as_kwargs()["aws_secret_access_key"] == SECRET  # still usable by the SDK
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(credentials)


def test_a_misspelt_key_is_an_error_that_does_not_echo_values():
    with pytest.raises(ConfigError, match=r"unknown credential key\(s\) \['aws_secret_key'\]") as error:
        Credentials({"aws_secret_key": SECRET}, KEYS, "credentials 'aws'")
    assert SECRET not in str(error.value)
    with pytest.raises(ConfigError, match="must be strings"):
        Credentials({"aws_access_key_id": 1234567}, KEYS, "aws")


def test_redact_masks_every_occurrence_and_leaves_short_words():
    assert redact(f"id={KEY_ID} key={SECRET} again {KEY_ID}", [KEY_ID, SECRET]) == "id=*** key=*** again ***"
    assert redact("region us-east-1", ["us"]) == "region us-east-1"


def test_the_filter_masks_records_of_any_logger_inside_the_block(caplog):
    caplog.set_level(logging.DEBUG)
    with redacting_logs([SECRET, KEY_ID]):
        logging.getLogger("botocore.endpoint").debug("headers %s", {"X-Key": SECRET})
        logging.getLogger("green_deploy.deploy").info("using %s", KEY_ID)
        try:
            raise RuntimeError(f"signature with {SECRET} failed")
        except RuntimeError:
            logging.getLogger("azure.core").exception("call failed")
    logging.getLogger("outside").info("after the block: %s", "plain")
    assert len(caplog.records) == 4
    for record in caplog.records:
        text = caplog.handler.format(record)
        assert SECRET not in text and KEY_ID not in text
    assert "***" in caplog.records[0].getMessage()
    assert all(not isinstance(f, RedactingFilter) for f in caplog.handler.filters)  # removed after the block
