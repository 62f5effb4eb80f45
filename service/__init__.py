"""The api process: an aiohttp pod that routes, authenticates, caches, admits, enqueues
requests on SQS and waits for each reply on the pod's own Redis channel."""
