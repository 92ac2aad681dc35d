# `terraform test`: plans and applies this example against a mocked AWS provider (no account, no
# network, no cost) and checks what it would create. Run after
# `terraform init -backend=false` (see infra/README.md).

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"] }
  }
  mock_data "aws_vpc" {
    defaults = { id = "vpc-0123456789abcdef0", cidr_block = "10.0.0.0/16" }
  }
  mock_data "aws_subnets" {
    defaults = { ids = ["subnet-0bbbbbbbbbbbbbbbb", "subnet-0aaaaaaaaaaaaaaaa"] }
  }
  mock_data "aws_subnet" {
    defaults = { vpc_id = "vpc-0123456789abcdef0", availability_zone = "eu-west-1a" }
  }
  mock_data "aws_ami" {
    defaults = { id = "ami-0123456789abcdef0" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  # Ids and ARNs the provider checks the form of.
  mock_resource "aws_instance" {
    defaults = { id = "i-0123456789abcdef0", private_ip = "10.0.1.10" }
  }
  mock_resource "aws_iam_policy" {
    defaults = { arn = "arn:aws:iam::123456789012:policy/firedrill-control-plane" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/firedrill-control-plane" }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0", latest_version = 1 }
  }
  mock_resource "aws_security_group" {
    defaults = { id = "sg-0123456789abcdef0" }
  }
}

# The second subnet is in another zone.
override_data {
  target = data.aws_subnet.selected["subnet-0bbbbbbbbbbbbbbbb"]
  values = { vpc_id = "vpc-0123456789abcdef0", availability_zone = "eu-west-1b" }
}

variables {
  region            = "eu-west-1"
  control_plane_url = "https://cp.example.internal:7080/"
  # A well-formed token for a made-up control plane.
  join_token           = "fdj_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_AAAAAA_af56241a86ec54288922e6296d668738b473fc9841fa5fb124f4616851e296ab"
  control_plane_ca_pem = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
}

run "agents_enroll_with_an_existing_control_plane" {
  command = apply

  assert {
    condition     = aws_autoscaling_group.agents.min_size == 2 && aws_autoscaling_group.agents.desired_capacity == 2 && aws_autoscaling_group.agents.max_size == 4
    error_message = "the group should have 2..4 instances, 2 desired"
  }
  assert {
    condition     = length(aws_autoscaling_group.agents.vpc_zone_identifier) == 2 && length(local.azs) == 2
    error_message = "the group should span the two default subnets in two zones"
  }
  assert {
    condition     = anytrue([for t in aws_autoscaling_group.agents.tag : t.key == "firedrill:opt-in" && t.value == "true" && t.propagate_at_launch])
    error_message = "the group should carry firedrill:opt-in=true, propagated at launch"
  }
  assert {
    condition     = anytrue([for t in aws_autoscaling_group.agents.tag : t.key == "app" && t.value == "web" && t.propagate_at_launch])
    error_message = "the group should carry app=web, propagated at launch"
  }
  assert {
    condition     = aws_launch_template.agents.image_id == "ami-0123456789abcdef0" && aws_launch_template.agents.metadata_options[0].http_tokens == "required"
    error_message = "the launch template should use the Debian AMI and IMDSv2"
  }
  # The user data is the cloud-config of infra/cloud-init/agent.yaml with the values filled in.
  assert {
    condition     = startswith(base64decode(aws_launch_template.agents.user_data), "#cloud-config\n")
    error_message = "the user data should be a cloud-config"
  }
  assert {
    condition = strcontains(
      [for f in yamldecode(base64decode(aws_launch_template.agents.user_data)).write_files : f.content if f.path == "/usr/local/sbin/firedrill-install-agent"][0],
      "CP_URL=\"https://cp.example.internal:7080\"\nLABELS=\"app=web,firedrill:opt-in=true\"\n"
    )
    error_message = "the install script should get the control plane URL (no trailing slash) and the labels"
  }
  assert {
    condition     = [for f in yamldecode(base64decode(aws_launch_template.agents.user_data)).write_files : f.content if f.path == "/run/firedrill-install/join-token"][0] == var.join_token
    error_message = "the join token should be written for the install script"
  }
  assert {
    condition     = base64decode([for f in yamldecode(base64decode(aws_launch_template.agents.user_data)).write_files : f.content if f.path == "/run/firedrill-install/ca.pem"][0]) == var.control_plane_ca_pem
    error_message = "the CA should be written, base64 in the YAML"
  }
  assert {
    condition     = yamldecode(base64decode(aws_launch_template.agents.user_data)).runcmd == [["/usr/local/sbin/firedrill-install-agent"]]
    error_message = "runcmd should run the install script"
  }
  # Agents may open the control plane's gRPC and HTTP ports, in the VPC when no CIDR is given.
  assert {
    condition     = toset(keys(aws_vpc_security_group_egress_rule.agents_to_control_plane)) == toset(["10.0.0.0/16:7070", "10.0.0.0/16:7080"])
    error_message = "agents should reach the control plane's ports 7070 and 7080 in the VPC"
  }
  assert {
    condition     = length(aws_vpc_security_group_egress_rule.agents_internet) == 2
    error_message = "agents should reach package mirrors on 80 and 443 by default"
  }
  # The least-privilege policy, as in infra/aws/iam-policy.json.
  assert {
    condition     = aws_iam_policy.control_plane.policy == file("${path.module}/../../aws/iam-policy.json")
    error_message = "the control plane's policy should be infra/aws/iam-policy.json"
  }
  assert {
    condition     = aws_iam_instance_profile.control_plane.role == aws_iam_role.control_plane.name && aws_iam_role_policy_attachment.control_plane.policy_arn == aws_iam_policy.control_plane.arn
    error_message = "the instance profile should carry the role with the policy"
  }
  assert {
    condition     = length(aws_instance.control_plane) == 0 && length(aws_security_group.control_plane) == 0
    error_message = "no control plane instance unless create_control_plane"
  }
}

run "no_join_token_means_an_empty_group" {
  command = plan

  variables {
    join_token = ""
  }

  assert {
    condition     = aws_autoscaling_group.agents.min_size == 0 && aws_autoscaling_group.agents.desired_capacity == 0
    error_message = "without a join token the group should have no instances"
  }
}

run "a_control_plane_instance_too" {
  command = apply

  variables {
    control_plane_url     = ""
    control_plane_ca_pem  = ""
    create_control_plane  = true
    server_tarball_url    = "https://example-bucket.s3.amazonaws.com/firedrill-server-0.1.0-linux-x64.tar.gz"
    server_tarball_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
    admin_cidr_blocks     = ["203.0.113.7/32"]
    agent_labels          = { env = "staging" }
  }

  assert {
    condition     = output.control_plane_url == "https://10.0.1.10:7080"
    error_message = "agents should enroll with the created control plane's private address"
  }
  assert {
    condition     = aws_instance.control_plane[0].iam_instance_profile == aws_iam_instance_profile.control_plane.name
    error_message = "the control plane instance should have the role"
  }
  assert {
    condition     = !contains(keys(aws_instance.control_plane[0].tags), "firedrill:opt-in")
    error_message = "the control plane must not be opted in"
  }
  assert {
    condition     = toset(keys(aws_vpc_security_group_egress_rule.agents_to_control_plane)) == toset(["control-plane:7070", "control-plane:7080"]) && aws_vpc_security_group_egress_rule.agents_to_control_plane["control-plane:7070"].cidr_ipv4 == "10.0.1.10/32"
    error_message = "agents should reach exactly the control plane instance"
  }
  assert {
    condition     = alltrue([for r in aws_vpc_security_group_ingress_rule.control_plane_from_agents : r.referenced_security_group_id == aws_security_group.agents.id]) && length(aws_vpc_security_group_ingress_rule.control_plane_from_agents) == 2
    error_message = "the control plane should accept gRPC and HTTP from the agents' security group"
  }
  assert {
    condition     = toset(keys(aws_vpc_security_group_ingress_rule.control_plane_from_admins)) == toset(["203.0.113.7/32:7080", "203.0.113.7/32:22"])
    error_message = "admins should reach the HTTP API and SSH"
  }
  assert {
    condition = strcontains(
      [for f in yamldecode(aws_instance.control_plane[0].user_data).write_files : f.content if f.path == "/usr/local/sbin/firedrill-install-server"][0],
      "FIREDRILL_GRPC_ADDR=0.0.0.0:7070\nFIREDRILL_HTTP_ADDR=0.0.0.0:7080\nFIREDRILL_ADVERTISE=$ip,$dns\nFIREDRILL_AWS_REGION=eu-west-1\n"
    )
    error_message = "the control plane's server.env should listen on all addresses and name the region"
  }
  assert {
    condition     = output.agent_labels == "app=web,firedrill:opt-in=true,env=staging"
    error_message = "agent labels should add agent_labels"
  }
  assert {
    condition     = [for f in yamldecode(base64decode(aws_launch_template.agents.user_data)).write_files : f.content if f.path == "/run/firedrill-install/ca.pem"][0] == ""
    error_message = "without a CA the agents check the join token's pin instead"
  }
}

run "a_token_without_a_control_plane_is_refused" {
  command = plan

  variables {
    control_plane_url = ""
  }

  expect_failures = [aws_launch_template.agents]
}

run "a_malformed_join_token_is_refused" {
  command = plan

  variables {
    join_token = "not-a-token"
  }

  expect_failures = [var.join_token]
}

run "a_control_plane_needs_a_tarball" {
  command = plan

  variables {
    create_control_plane = true
  }

  expect_failures = [aws_instance.control_plane]
}
