/**
 * EC2 identity from IMDSv2 (token-protected instance metadata), bounded in time so an agent off
 * EC2 starts without delay.
 */

/** What IMDS told us; empty fields when not on EC2. */
export interface Ec2Identity {
  instanceId: string;
  availabilityZone: string;
  region: string;
}

/** The instance metadata endpoint on EC2. */
export const DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254";

const EMPTY: Ec2Identity = { instanceId: "", availabilityZone: "", region: "" };

/**
 * Asks IMDSv2 for the instance id and availability zone. Resolves to empty fields when IMDS does
 * not answer within `timeoutMs` (default 300 ms) in total, or answers with an error.
 */
export async function readEc2Identity(endpoint: string = DEFAULT_IMDS_ENDPOINT, timeoutMs = 300): Promise<Ec2Identity> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const tokenRes = await fetch(`${endpoint}/latest/api/token`, {
      method: "PUT",
      headers: { "X-aws-ec2-metadata-token-ttl-seconds": "60" },
      signal,
    });
    if (!tokenRes.ok) return EMPTY;
    const token = await tokenRes.text();
    const get = async (path: string): Promise<string> => {
      const res = await fetch(`${endpoint}/latest/meta-data/${path}`, {
        headers: { "X-aws-ec2-metadata-token": token },
        signal,
      });
      return res.ok ? (await res.text()).trim() : "";
    };
    const [instanceId, availabilityZone] = await Promise.all([get("instance-id"), get("placement/availability-zone")]);
    // The region is the AZ without its trailing letter(s): us-east-1a -> us-east-1.
    const region = availabilityZone.replace(/[a-z]+$/, "");
    return { instanceId, availabilityZone, region };
  } catch {
    return EMPTY;
  }
}
