"""The scaling simulator: ``python -m bench.scaling SCENARIO.toml`` (see ``__main__``).

One module per concern:

- ``terraform`` (with ``hcl``): the deployed policy, read from deploy/terraform, and
  ``tfedge``: what its edge module puts in front of the api (the API Gateway's kind, its
  throttles by method, integration timeout and direct routes, the WAFs, the NLBs);
- ``aws``: AWS's constants (metric delays, target tracking's alarms, start times, prices),
  each with its source; ``model``: the simulator's own assumptions;
- ``figures``: the measured per-request costs that bench.throughput writes;
- ``scenario``: the scenario files (load over time, backend, overrides);
- ``gateway`` (CloudFront, API Gateway), ``admission`` (the api's rule), ``workers``
  (queues, workers, backend), ``writer`` (ingest queue and writers); ``model`` also holds
  flags to compare: ``worker_refuses_late`` (the product's late refusal, on as the
  workers do it; false shows the product before it) and ``admission_margin_s`` (a fixed
  margin of admission instead of the product's, to see what the margin is worth);
- ``cloudwatch`` (metrics, metric math, alarms) and ``autoscaling`` (ECS services,
  target tracking, step scaling; scheduled actions run in ``sim``);
- ``sim`` (the loop), ``ledger`` (where each request ended), ``report`` (the JSON and the
  table), ``criteria`` (what a policy must hold on a scenario), ``plot``, ``run`` (a
  scenario file to a result);
- ``compare`` (the shipped scenarios on an earlier policy and on today's, for the docs)
  and ``capacity`` (what a steady load of 1,000 to 50,000 requests/s takes);
- ``machine`` (the simulator configured as ``make sla`` runs this machine), ``calibrate``
  (it against a recorded ``make sla`` run, ``measured/`` holding the recorded one) and
  ``sqs_delivery`` (the local emulator's delivery delay it uses).

The user's documentation (how to run it, the model, its assumptions, what it lacks):
docs/benchmarks.md, "Scaling"; the calibration: docs/scaling/calibration.md.
"""
