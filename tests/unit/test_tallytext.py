"""The text form of tallied values: the writer's, Postgres's and the api's agree."""

from __future__ import annotations

from queuefront import tallytext


def test_booleans_round_trip_between_the_writer_postgres_and_the_api() -> None:
    for value in (True, False):
        text = tallytext.encode(value)
        assert text == str(value)  # what the writer counts
        shown = tallytext.to_postgres(text, "bool")
        assert shown == str(value).lower()  # bool::text
        assert tallytext.from_postgres(shown, "bool") == text
        assert tallytext.from_postgres(shown[0], "bool") == text  # t/f, the text protocol
        assert tallytext.decode(text, "bool") is value


def test_integers_and_text_pass_through_as_they_are() -> None:
    assert tallytext.encode(7) == "7"
    assert tallytext.decode("7", "int") == 7
    assert tallytext.decode("-7", "bigint") == -7
    assert tallytext.from_postgres("7", "int") == tallytext.to_postgres("7", "int") == "7"
    # a text group called "t" is not a boolean
    assert tallytext.from_postgres("t", "text") == "t"
    assert tallytext.to_postgres("True", "text") == "True"
    assert tallytext.decode("t", "text") == "t"
