# The scaling of the whole stack as examples/production.tfvars describes it, planned with a
# mocked AWS provider: the api writes its scaling signal under the names, namespace and
# dimensions the fast alarms read (both from scaling_signal.json), and the worker floor
# runs on regular Fargate.

mock_provider "aws" {
  source = "./tests/mocks"
}

mock_provider "aws" {
  alias  = "us_east_1"
  source = "./tests/mocks"
}

run "the_api_writes_what_the_alarms_read" {
  command = apply

  assert {
    condition = {
      for k, v in { for e in jsondecode(module.compute.container_definitions["api"])[0].environment : e.name => e.value } :
      k => v if startswith(k, "QF_SCALING_SIGNAL_")
      } == {
      QF_SCALING_SIGNAL_INTERVAL_S = "5"
      QF_SCALING_SIGNAL_NAMESPACE  = "queuefront/scaling"
      QF_SCALING_SIGNAL_DIMENSIONS = "Stack=queuefront"
    }
    error_message = "the api writes its signal every 5 s, in the namespace and with the stack's dimension of scaling_signal.json"
  }

  assert {
    condition = alltrue([
      for alarm in values(module.autoscaling.signal_reads) :
      alarm.namespace == jsondecode(file("scaling_signal.json")).namespace
      && alarm.dimensions == tomap({ (jsondecode(file("scaling_signal.json")).dimension) = "queuefront" })
      && length(setsubtract(alarm.metrics, values(jsondecode(file("scaling_signal.json")).metrics))) == 0
    ])
    error_message = "the fast alarms read the namespace, dimension and metric names the api writes"
  }

  assert {
    condition     = tolist(module.autoscaling.signal_reads.worker_fast.metrics) == tolist(["DrainCapacity", "DrainRate", "QueueBacklog"]) && tolist(module.autoscaling.signal_reads.api_fast.metrics) == tolist(["CpuUtilization"])
    error_message = "the workers scale on the drain and the backlog, the api on its CPU"
  }

  assert {
    condition     = alltrue([for p in ["worker", "writer"] : !contains(keys({ for e in jsondecode(module.compute.container_definitions[p])[0].environment : e.name => e.value }), "QF_SCALING_SIGNAL_INTERVAL_S")])
    error_message = "only the api writes the signal"
  }
}

run "a_worker_floor_on_spot_is_refused" {
  command = plan

  variables {
    on_demand_base = 1
  }

  expect_failures = [var.on_demand_base]
}
