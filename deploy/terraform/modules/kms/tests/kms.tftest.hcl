# The kms module, planned with a mocked AWS provider: who may use the stack's key.

mock_provider "aws" {
  override_during = plan
  source          = "../../tests/mocks"
}

variables {
  name = "qf"
}

run "services_that_encrypt_for_us_may_use_the_key" {
  command = plan

  assert {
    condition = toset([
      for st in jsondecode(aws_kms_key.this.policy).Statement : st.Principal.Service if can(st.Principal.Service)
    ]) == toset(["logs.eu-west-1.amazonaws.com", "cloudwatch.amazonaws.com", "events.amazonaws.com"])
    error_message = "CloudWatch Logs, CloudWatch alarms and EventBridge (to the encrypted alarm topic)"
  }

  assert {
    condition     = aws_kms_key.this.enable_key_rotation
    error_message = "the key rotates"
  }
}
