"""What every process derives from its settings the same way: the send linger in seconds,
the Redis key names, the pod id, and its queues opened with their dead-letter queues."""

from __future__ import annotations

from typing import Any

from queuefront.keys import Keys
from queuefront.settings import POD_ID_HEX_CHARS, Settings
from queuefront.sqs import DLQ_LINGER_S, open_with_dlqs


def test_the_linger_is_in_seconds_and_the_keys_carry_the_prefix() -> None:
    settings = Settings(send_linger_ms=2.5, key_prefix="t1:")
    assert settings.send_linger_s == 0.0025
    assert settings.keys == Keys("t1:")
    assert settings.keys.reply("r") == "t1:reply:r"


def test_an_empty_pod_id_is_one_random_id_per_process_start() -> None:
    drawn = Settings(pod_id="")
    assert len(drawn.pod_id) == POD_ID_HEX_CHARS
    assert drawn.pod_id == drawn.pod_id  # drawn once, not per read
    assert Settings(pod_id="").pod_id != drawn.pod_id
    assert Settings(pod_id="pod-7").pod_id == "pod-7"


class FakeClient:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def get_queue_url(self, QueueName: str) -> dict[str, Any]:
        self.asked.append(QueueName)
        return {"QueueUrl": f"http://sqs/{QueueName}"}


async def test_queues_open_with_their_dead_letter_queues_in_order() -> None:
    settings = Settings(send_linger_ms=3, dlq_suffix="-dead")
    client = FakeClient()
    queues, dlqs = await open_with_dlqs(client, settings, {"high": "q-h", "normal": "q-n"})
    assert {role: q.url for role, q in queues.items()} == {
        "high": "http://sqs/q-h",
        "normal": "http://sqs/q-n",
    }
    assert all(q.linger_s == 0.003 for q in queues.values())
    assert [d.name for d in dlqs] == ["q-h-dead", "q-n-dead"]
    assert all(d.linger_s == DLQ_LINGER_S for d in dlqs)
