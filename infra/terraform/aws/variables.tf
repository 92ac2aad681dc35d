variable "region" {
  description = "AWS region, e.g. eu-west-1."
  type        = string
}

variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "firedrill"
}

variable "tags" {
  description = "Tags added to every resource (and to the group's instances)."
  type        = map(string)
  default     = {}
}

# --- where the agents run ------------------------------------------------------------------------

variable "subnet_ids" {
  description = "Subnets of the agents' Auto Scaling group, in at least two availability zones of one VPC. Empty: the default VPC's default subnets in the region's first two zones."
  type        = list(string)
  default     = []
}

variable "architecture" {
  description = "CPU architecture of the Debian 12 AMI: amd64 (x86 instance types) or arm64 (Graviton, e.g. t4g). Must match instance_type (and the server tarball, linux-x64 or linux-arm64)."
  type        = string
  default     = "amd64"

  validation {
    condition     = contains(["amd64", "arm64"], var.architecture)
    error_message = "architecture must be amd64 or arm64."
  }
}

variable "instance_type" {
  description = "Instance type of the agents."
  type        = string
  default     = "t3.micro"
}

variable "key_name" {
  description = "EC2 key pair for SSH to the instances; null for none."
  type        = string
  default     = null
}

variable "min_size" {
  description = "Auto Scaling group minimum (0 while no join_token is set)."
  type        = number
  default     = 2
}

variable "max_size" {
  description = "Auto Scaling group maximum."
  type        = number
  default     = 4
}

variable "desired_capacity" {
  description = "Auto Scaling group desired capacity (0 while no join_token is set)."
  type        = number
  default     = 2
}

variable "app" {
  description = "The app the group runs: its `app` tag and the agents' `app` label, what experiments select."
  type        = string
  default     = "web"
}

variable "agent_labels" {
  description = "More agent labels, beyond app=<app> and firedrill:opt-in=true."
  type        = map(string)
  default     = {}
}

variable "allow_agent_internet_egress" {
  description = "Let the agents reach the internet on ports 80 and 443: cloud-init installs curl, iproute2 and nftables from the Debian mirror at boot. Set false where a mirror or NAT is reached otherwise, and open what your app needs."
  type        = bool
  default     = true
}

# --- the control plane the agents enroll with ----------------------------------------------------

variable "control_plane_url" {
  description = "The control plane's HTTP API, e.g. https://cp.example.internal:7080; agents fetch /install/agent.sh from it. Empty with create_control_plane: the created instance's private address."
  type        = string
  default     = ""
}

variable "control_plane_ca_pem" {
  description = "The control plane's CA certificate (PEM, DATA_DIR/pki/ca.crt). Empty: agents fetch /install/ca.pem and use it only if it is the CA the join token pins."
  type        = string
  default     = ""
}

variable "join_token" {
  description = "Join token the agents enroll with (firedrill join-token create --ttl 2160h --labels app=web). It lives in the launch template's user data and in the Terraform state. Empty: the group is created with 0 instances."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.join_token == "" || can(regex("^fdj_[0-9a-f]{12}_[A-Za-z0-9_-]{43}_[0-9a-f]{64}$", var.join_token))
    error_message = "join_token is not a join token (fdj_<id>_<secret>_<ca sha256>): create one with firedrill join-token create."
  }
}

variable "grpc_port" {
  description = "The control plane's gRPC port, where agents connect."
  type        = number
  default     = 7070
}

variable "http_port" {
  description = "The control plane's HTTP API port (/install/agent.sh, the CLI)."
  type        = number
  default     = 7080
}

variable "control_plane_cidr_blocks" {
  description = "Where an existing control plane is (CIDR blocks agents may open grpc_port and http_port to). Empty: the VPC's CIDR. Not used with create_control_plane."
  type        = list(string)
  default     = []
}

# --- optional: the control plane itself ----------------------------------------------------------

variable "create_control_plane" {
  description = "Also create a control plane instance (Debian 12, the server tarball, the IAM role), in the first subnet."
  type        = bool
  default     = false
}

variable "control_plane_instance_type" {
  description = "Instance type of the control plane."
  type        = string
  default     = "t3.small"
}

variable "server_tarball_url" {
  description = "HTTPS URL of firedrill-server-<v>-linux-<arch>.tar.gz (from pnpm release), reachable from the instance, e.g. a presigned S3 URL. Needed with create_control_plane."
  type        = string
  default     = ""
}

variable "server_tarball_sha256" {
  description = "SHA-256 (hex) of the server tarball, from its .sha256 file; checked before install. Empty: not checked."
  type        = string
  default     = ""

  validation {
    condition     = var.server_tarball_sha256 == "" || can(regex("^[0-9a-f]{64}$", var.server_tarball_sha256))
    error_message = "server_tarball_sha256 is 64 lowercase hex digits (the first field of the .sha256 file)."
  }
}

variable "admin_cidr_blocks" {
  description = "CIDR blocks allowed to the control plane's HTTP API and SSH (you, a bastion, a VPN)."
  type        = list(string)
  default     = []
}
