output "control_plane_role_arn" {
  description = "The control plane's IAM role (least-privilege policy of infra/aws/iam-policy.json)."
  value       = aws_iam_role.control_plane.arn
}

output "control_plane_instance_profile" {
  description = "Instance profile to give an EC2 instance that runs firedrill server."
  value       = aws_iam_instance_profile.control_plane.name
}

output "control_plane_policy_arn" {
  description = "The control plane's IAM policy."
  value       = aws_iam_policy.control_plane.arn
}

output "control_plane_url" {
  description = "The URL agents enroll with (empty while none is set or created)."
  value       = local.control_plane_url
}

output "control_plane_instance_id" {
  description = "The created control plane instance (create_control_plane), else null."
  value       = one(aws_instance.control_plane[*].id)
}

output "control_plane_private_ip" {
  description = "The created control plane's private address, else null."
  value       = one(aws_instance.control_plane[*].private_ip)
}

output "autoscaling_group_name" {
  description = "The agents' Auto Scaling group: select it in experiments (aws.autoScalingGroups) or with tags app and firedrill:opt-in."
  value       = aws_autoscaling_group.agents.name
}

output "launch_template" {
  description = "The agents' launch template id and version."
  value       = { id = aws_launch_template.agents.id, version = aws_launch_template.agents.latest_version }
}

output "agents_security_group_id" {
  description = "The agents' security group (add your app's rules to it)."
  value       = aws_security_group.agents.id
}

output "agent_labels" {
  description = "The labels the agents enroll with."
  value       = local.agent_labels
}

output "subnets" {
  description = "The agents' subnets and their availability zones."
  value       = { for id, s in data.aws_subnet.selected : id => s.availability_zone }
}

output "ami_id" {
  description = "The Debian 12 AMI used."
  value       = data.aws_ami.debian12.id
}

output "agents_enabled" {
  description = "false while no join_token is set: the group has 0 instances until one is."
  value       = local.agents_enabled
}
