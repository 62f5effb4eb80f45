"""SQS service limits, named with their units so no magic number hides in the code.

See the SQS developer guide, "Quotas related to messages".
"""

MAX_BATCH_ENTRIES = 10
"""Entries in one SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch."""

MAX_RECEIVE_MESSAGES = 10
"""MaxNumberOfMessages of one ReceiveMessage call."""

MAX_MESSAGE_BYTES = 262_144
"""One message body (256 KiB); also the total of all bodies in one SendMessageBatch."""

MAX_BATCH_BYTES = 262_144

MAX_WAIT_TIME_S = 20
"""Longest long poll (WaitTimeSeconds)."""

MAX_VISIBILITY_TIMEOUT_S = 43_200
"""Twelve hours."""

MAX_BATCH_ENTRY_ID_CHARS = 80
