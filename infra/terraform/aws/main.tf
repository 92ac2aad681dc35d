# firedrill on AWS, the setup the AWS game days expect (see infra/README.md):
#   - the control plane's IAM role and instance profile, with the least-privilege policy of
#     infra/aws/iam-policy.json;
#   - a launch template (Debian 12) whose user data, infra/cloud-init/agent.yaml, installs and
#     enrolls the firedrill agent at boot from the control plane;
#   - an Auto Scaling group over two availability zones, tagged firedrill:opt-in=true with
#     propagate_at_launch, so that firedrill may terminate, stop and start its instances;
#   - security groups: agents may open the control plane's gRPC and HTTP ports, nothing comes in;
#   - optionally (create_control_plane) the control plane instance itself.
# An example to read and adapt, not a module: one group, one app.

provider "aws" {
  region = var.region
}

data "aws_partition" "current" {}

locals {
  # Whether a join token is set is no secret; the token is.
  agents_enabled = nonsensitive(var.join_token != "")

  # The labels each agent enrolls with: what experiments select, and the opt-in firedrill's
  # guardrails require (`optInLabel`, default firedrill:opt-in=true).
  agent_labels = join(",", concat(
    ["app=${var.app}", "firedrill:opt-in=true"],
    [for k, v in var.agent_labels : "${k}=${v}"],
  ))

  control_plane_url = (
    var.control_plane_url != "" ? trimsuffix(var.control_plane_url, "/") :
    var.create_control_plane ? "https://${aws_instance.control_plane[0].private_ip}:${var.http_port}" :
    ""
  )
}

# --- subnets: two availability zones ------------------------------------------------------------

data "aws_availability_zones" "available" {
  state = "available"
  # Regular zones only (no Local or Wavelength Zones).
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_vpc" "default" {
  count   = length(var.subnet_ids) == 0 ? 1 : 0
  default = true
}

# Without subnet_ids: the default subnet of each of the region's first two zones.
data "aws_subnets" "default" {
  count = length(var.subnet_ids) == 0 ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }
  filter {
    name   = "default-for-az"
    values = ["true"]
  }
  filter {
    name   = "availability-zone"
    values = slice(data.aws_availability_zones.available.names, 0, 2)
  }
}

locals {
  subnet_ids = length(var.subnet_ids) > 0 ? var.subnet_ids : sort(data.aws_subnets.default[0].ids)
}

data "aws_subnet" "selected" {
  for_each = toset(local.subnet_ids)
  id       = each.value
}

locals {
  # one() fails the plan when the subnets are in more than one VPC.
  vpc_id = one(distinct([for s in data.aws_subnet.selected : s.vpc_id]))
  azs    = distinct([for s in data.aws_subnet.selected : s.availability_zone])
}

data "aws_vpc" "selected" {
  id = local.vpc_id
}

# --- Debian 12 ----------------------------------------------------------------------------------

data "aws_ami" "debian12" {
  most_recent = true
  owners      = ["136693071363"] # Debian's AWS account

  filter {
    name   = "name"
    values = ["debian-12-${var.architecture}-*"]
  }
  filter {
    name   = "architecture"
    values = [var.architecture == "arm64" ? "arm64" : "x86_64"]
  }
  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

# --- the control plane's IAM role ---------------------------------------------------------------

data "aws_iam_policy_document" "ec2_assume_role" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "control_plane" {
  name               = "${var.name}-control-plane"
  description        = "firedrill control plane: reads EC2, Auto Scaling and CloudWatch; acts only on firedrill:opt-in=true resources"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume_role.json
  tags               = var.tags
}

resource "aws_iam_policy" "control_plane" {
  name        = "${var.name}-control-plane"
  description = "firedrill control plane, least privilege (infra/aws/iam-policy.json)"
  # The file's ARNs are written for the aws partition; this makes them right in GovCloud and China.
  policy = replace(file("${path.module}/../../aws/iam-policy.json"), "arn:aws:", "arn:${data.aws_partition.current.partition}:")
  tags   = var.tags
}

resource "aws_iam_role_policy_attachment" "control_plane" {
  role       = aws_iam_role.control_plane.name
  policy_arn = aws_iam_policy.control_plane.arn
}

# For a control plane on EC2 (create_control_plane, or your own instance). Agents get no AWS access.
resource "aws_iam_instance_profile" "control_plane" {
  name = "${var.name}-control-plane"
  role = aws_iam_role.control_plane.name
  tags = var.tags
}

# --- the agents ---------------------------------------------------------------------------------

resource "aws_security_group" "agents" {
  name        = "${var.name}-${var.app}-agents"
  description = "firedrill agents: out to the control plane; nothing in (add your app's rules)"
  vpc_id      = local.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-${var.app}-agents" })
}

locals {
  # Where agents may connect to: the created control plane, the given blocks, else the VPC.
  control_plane_cidr_blocks = length(var.control_plane_cidr_blocks) > 0 ? var.control_plane_cidr_blocks : [data.aws_vpc.selected.cidr_block]
  control_plane_destinations = (var.create_control_plane ?
    { "control-plane" = "${aws_instance.control_plane[0].private_ip}/32" } :
    { for cidr in local.control_plane_cidr_blocks : cidr => cidr }
  )
}

# Agents dial out to the control plane: gRPC (the agent link) and HTTP (the install script, the
# CA and the agent tarball at enrollment).
resource "aws_vpc_security_group_egress_rule" "agents_to_control_plane" {
  for_each = {
    for pair in setproduct(keys(local.control_plane_destinations), [var.grpc_port, var.http_port]) :
    "${pair[0]}:${pair[1]}" => { cidr = local.control_plane_destinations[pair[0]], port = pair[1] }
  }

  security_group_id = aws_security_group.agents.id
  description       = each.value.port == var.grpc_port ? "firedrill control plane gRPC" : "firedrill control plane HTTP API (install)"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_egress_rule" "agents_internet" {
  for_each = var.allow_agent_internet_egress ? toset(["80", "443"]) : toset([])

  security_group_id = aws_security_group.agents.id
  description       = "packages at boot (cloud-init)"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.value)
  to_port           = tonumber(each.value)
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_launch_template" "agents" {
  name_prefix            = "${var.name}-${var.app}-"
  description            = "firedrill agents (${var.app}): Debian 12; cloud-init installs and enrolls the agent"
  image_id               = data.aws_ami.debian12.id
  instance_type          = var.instance_type
  key_name               = var.key_name
  vpc_security_group_ids = [aws_security_group.agents.id]
  update_default_version = true

  # Sensitive (the join token): shown as such in plans; in the state in clear text.
  user_data = base64encode(templatefile("${path.module}/../../cloud-init/agent.yaml", {
    control_plane_url = local.control_plane_url
    ca_pem_b64        = var.control_plane_ca_pem == "" ? "" : base64encode(var.control_plane_ca_pem)
    join_token        = var.join_token
    labels            = local.agent_labels
  }))

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = !local.agents_enabled || local.control_plane_url != ""
      error_message = "Agents need a control plane: set control_plane_url (https://HOST:PORT of its HTTP API), or create_control_plane = true."
    }
  }
}

resource "aws_autoscaling_group" "agents" {
  name                = "${var.name}-${var.app}"
  vpc_zone_identifier = local.subnet_ids
  # Without a join token the agents could not enroll: the group waits, empty.
  min_size                  = local.agents_enabled ? var.min_size : 0
  max_size                  = var.max_size
  desired_capacity          = local.agents_enabled ? var.desired_capacity : 0
  health_check_type         = "EC2"
  health_check_grace_period = 300

  launch_template {
    id      = aws_launch_template.agents.id
    version = aws_launch_template.agents.latest_version
  }

  # The opt-in, checked twice: IAM allows TerminateInstanceInAutoScalingGroup only on a group
  # with this tag (iam-policy.json), and firedrill's guardrails (optInTag) and IAM's
  # Terminate/Stop/Start/RebootInstances check it on the instance, which gets it from the group.
  tag {
    key                 = "firedrill:opt-in"
    value               = "true"
    propagate_at_launch = true
  }
  tag {
    key                 = "app"
    value               = var.app
    propagate_at_launch = true
  }
  tag {
    key                 = "Name"
    value               = "${var.name}-${var.app}"
    propagate_at_launch = true
  }
  dynamic "tag" {
    for_each = var.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    precondition {
      condition     = length(local.azs) >= 2
      error_message = "The agents' subnets are all in one availability zone (${join(", ", local.azs)}): give subnet_ids in at least two."
    }
  }
}

# --- optional: the control plane instance -------------------------------------------------------
# One Debian 12 instance in the first subnet, with the IAM role above, that installs the server
# tarball (server_tarball_url) and runs infra/systemd/firedrill-server.service. It carries no
# firedrill:opt-in tag: no experiment can terminate or stop it. Its data dir (the CA every agent
# pins, the database) is on the root volume: terminating the instance loses it, and every agent
# must then be enrolled again. Fine for a trial; for real use keep /var/lib/firedrill on a volume
# you back up.

resource "aws_security_group" "control_plane" {
  count       = var.create_control_plane ? 1 : 0
  name        = "${var.name}-control-plane"
  description = "firedrill control plane: gRPC and HTTP from agents, HTTP and SSH from admins"
  vpc_id      = local.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-control-plane" })
}

resource "aws_vpc_security_group_ingress_rule" "control_plane_from_agents" {
  for_each = var.create_control_plane ? { grpc = var.grpc_port, http = var.http_port } : {}

  security_group_id            = aws_security_group.control_plane[0].id
  description                  = "firedrill agents (${each.key})"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.agents.id
}

resource "aws_vpc_security_group_ingress_rule" "control_plane_from_admins" {
  for_each = var.create_control_plane ? {
    for pair in setproduct(var.admin_cidr_blocks, [var.http_port, 22]) : "${pair[0]}:${pair[1]}" => { cidr = pair[0], port = pair[1] }
  } : {}

  security_group_id = aws_security_group.control_plane[0].id
  description       = each.value.port == 22 ? "SSH" : "firedrill HTTP API"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

# AWS APIs (EC2, Auto Scaling, CloudWatch), the server tarball and Debian packages.
resource "aws_vpc_security_group_egress_rule" "control_plane_internet" {
  for_each = var.create_control_plane ? toset(["80", "443"]) : toset([])

  security_group_id = aws_security_group.control_plane[0].id
  description       = "AWS APIs, server tarball, packages"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.value)
  to_port           = tonumber(each.value)
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_instance" "control_plane" {
  count                  = var.create_control_plane ? 1 : 0
  ami                    = data.aws_ami.debian12.id
  instance_type          = var.control_plane_instance_type
  subnet_id              = local.subnet_ids[0]
  vpc_security_group_ids = [aws_security_group.control_plane[0].id]
  iam_instance_profile   = aws_iam_instance_profile.control_plane.name
  key_name               = var.key_name

  user_data = templatefile("${path.module}/control-plane.yaml.tftpl", {
    server_tarball_url    = var.server_tarball_url
    server_tarball_sha256 = var.server_tarball_sha256
    region                = var.region
    grpc_port             = var.grpc_port
    http_port             = var.http_port
  })

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    encrypted   = true
    volume_size = 16
  }

  tags = merge(var.tags, { Name = "${var.name}-control-plane" })

  lifecycle {
    precondition {
      condition     = var.server_tarball_url != ""
      error_message = "create_control_plane needs server_tarball_url: an HTTPS URL of firedrill-server-<v>-linux-<arch>.tar.gz (pnpm release) the instance can download."
    }
  }
}
