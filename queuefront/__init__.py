"""queuefront: a queue-fronted API tier for bursty traffic.

The library shared by the api, worker and writer processes: settings, the message
codec, SQS access (batched calls, receive loops), Redis keys and telemetry.
"""

__version__ = "0.1.0"
