"""SQS service limits, named with their units so no magic number hides in the code.

See the SQS developer guide, "Quotas related to messages".
"""

MAX_BATCH_ENTRIES = 10
"""Entries in one SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch."""

MAX_RECEIVE_MESSAGES = 10
"""MaxNumberOfMessages of one ReceiveMessage call."""

MAX_MESSAGE_BYTES = 1_048_576
"""The largest message body SQS accepts (1 MiB since August 2025; it was 256 KiB). A
queue's own ``MaximumMessageSize`` may be lower: ``QF_MAX_MESSAGE_BYTES`` says what ours
are created with, and that setting is what the api enforces."""

MAX_BATCH_BYTES = 1_048_576
"""The total of all bodies in one SendMessageBatch."""

MAX_WAIT_TIME_S = 20
"""Longest long poll (WaitTimeSeconds)."""

MAX_VISIBILITY_TIMEOUT_S = 43_200
"""Twelve hours."""

MAX_RECEIVE_COUNT = 1000
"""The largest ``maxReceiveCount`` of a redrive policy."""
