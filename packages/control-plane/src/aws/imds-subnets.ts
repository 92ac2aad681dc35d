/**
 * The control plane's own subnets, from IMDSv2 when it runs on EC2, so that aws-network-disrupt
 * never cuts the control plane off (besides `--aws-protect-subnets`). Bounded in time: off EC2 it
 * answers [] within `timeoutMs`. Plain node:http, as the agent's IMDS reader.
 */
import { request } from "node:http";

/** The instance metadata endpoint on EC2. */
export const DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254";

function call(url: URL, method: "GET" | "PUT", headers: Record<string, string>, deadline: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { method, headers, timeout: Math.max(1, deadline - Date.now()) }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve(res.statusCode === 200 ? body.trim() : undefined));
      res.on("error", () => resolve(undefined));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
    req.end();
  });
}

/**
 * The subnet ids of every network interface of this instance (IMDSv2:
 * `network/interfaces/macs/<mac>/subnet-id`), or [] when IMDS does not answer within `timeoutMs`.
 */
export async function readOwnSubnets(endpoint: string = DEFAULT_IMDS_ENDPOINT, timeoutMs = 1000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let base: URL;
  try {
    base = new URL(endpoint);
  } catch {
    return [];
  }
  const token = await call(new URL("/latest/api/token", base), "PUT", { "X-aws-ec2-metadata-token-ttl-seconds": "60" }, deadline);
  if (!token) return [];
  const get = (path: string) => call(new URL(`/latest/meta-data/${path}`, base), "GET", { "X-aws-ec2-metadata-token": token }, deadline);
  const macs = (await get("network/interfaces/macs/"))?.split("\n").map((m) => m.trim().replace(/\/$/, "")).filter((m) => m !== "") ?? [];
  const subnets = await Promise.all(macs.map((mac) => get(`network/interfaces/macs/${mac}/subnet-id`)));
  return [...new Set(subnets.filter((s): s is string => s !== undefined && /^subnet-[0-9a-f]+$/.test(s)))];
}
