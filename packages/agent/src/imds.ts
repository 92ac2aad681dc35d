/**
 * EC2 identity from IMDSv2 (token-protected instance metadata), bounded in time so an agent off
 * EC2 starts without delay. Plain node:http: no client warm-up eats into the 300 ms budget.
 */
import { request } from "node:http";

/** What IMDS told us; empty fields when not on EC2. */
export interface Ec2Identity {
  instanceId: string;
  availabilityZone: string;
  region: string;
}

/** The instance metadata endpoint on EC2. */
export const DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254";

const EMPTY: Ec2Identity = { instanceId: "", availabilityZone: "", region: "" };

function call(url: URL, method: "GET" | "PUT", headers: Record<string, string>, deadline: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const timeout = Math.max(1, deadline - Date.now());
    const req = request(url, { method, headers, timeout }, (res) => {
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
 * Asks IMDSv2 for the instance id and availability zone. Resolves to empty fields when IMDS does
 * not answer within `timeoutMs` (default 300 ms) in total, or answers with an error.
 */
export async function readEc2Identity(endpoint: string = DEFAULT_IMDS_ENDPOINT, timeoutMs = 300): Promise<Ec2Identity> {
  const deadline = Date.now() + timeoutMs;
  let base: URL;
  try {
    base = new URL(endpoint);
  } catch {
    return EMPTY;
  }
  const token = await call(new URL("/latest/api/token", base), "PUT", { "X-aws-ec2-metadata-token-ttl-seconds": "60" }, deadline);
  if (!token) return EMPTY;
  const get = (path: string) => call(new URL(`/latest/meta-data/${path}`, base), "GET", { "X-aws-ec2-metadata-token": token }, deadline);
  const [instanceId, availabilityZone] = await Promise.all([get("instance-id"), get("placement/availability-zone")]);
  if (!instanceId) return EMPTY;
  // The region is the AZ without its trailing letter(s): us-east-1a -> us-east-1.
  return { instanceId, availabilityZone: availabilityZone ?? "", region: (availabilityZone ?? "").replace(/[a-z]+$/, "") };
}
