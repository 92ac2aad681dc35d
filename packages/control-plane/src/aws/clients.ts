/**
 * The AWS SDK v3 clients the control plane uses (EC2, Auto Scaling, CloudWatch), one of each per
 * region, created on first use. Credentials come from the SDK's default chain (environment,
 * shared config/credentials files, SSO, web identity, ECS/EC2 instance roles). The endpoint is the
 * SDK's own resolution, which already honours `AWS_ENDPOINT_URL` and the per-service
 * `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL_AUTO_SCALING` / `AWS_ENDPOINT_URL_CLOUDWATCH`
 * (and `endpoint_url` in the profile), unless {@link AwsClientsOptions.endpoint} overrides it.
 */
import { AutoScalingClient } from "@aws-sdk/client-auto-scaling";
import { CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { EC2Client } from "@aws-sdk/client-ec2";
import { AwsRegionError } from "./errors.js";

/** Options of {@link createAwsClients}. */
export interface AwsClientsOptions {
  /** Region used when a selector or stop condition names none; else the SDK's default chain (AWS_REGION, the profile). */
  region?: string;
  /**
   * Endpoint for every client, e.g. `http://127.0.0.1:4566` for a local emulator. Without it the
   * SDK resolves the endpoint itself, honouring `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`).
   */
  endpoint?: string;
  /**
   * Attempts the SDK itself makes per request (its standard retry mode, for throttling and transient
   * errors). firedrill's own bounded retry wraps the actions on instances as well. @default 3
   */
  maxAttempts?: number;
}

/** The clients, per region. */
export interface AwsClients {
  /**
   * The region to use: `explicit`, else the configured one, else the SDK's default chain, else
   * `AWS_DEFAULT_REGION`.
   * Thrown when none is found: {@link AwsRegionError}.
   */
  region(explicit?: string): Promise<string>;
  ec2(region: string): EC2Client;
  autoScaling(region: string): AutoScalingClient;
  cloudWatch(region: string): CloudWatchClient;
  /** Closes every client's connections. */
  destroy(): void;
}

/** Creates the per-region client cache. Nothing is contacted until a call is made. */
export function createAwsClients(options: AwsClientsOptions = {}): AwsClients {
  const config = (region: string) => ({
    region,
    maxAttempts: options.maxAttempts ?? 3,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
  });
  const ec2 = new Map<string, EC2Client>();
  const autoScaling = new Map<string, AutoScalingClient>();
  const cloudWatch = new Map<string, CloudWatchClient>();
  let defaultRegion: Promise<string | undefined> | undefined;

  const cached = <C>(cache: Map<string, C>, region: string, create: () => C): C => {
    let client = cache.get(region);
    if (!client) cache.set(region, (client = create()));
    return client;
  };

  /** The SDK's default chain (AWS_REGION, then the profile's `region`), undefined when it finds none. */
  const sdkRegion = async (): Promise<string | undefined> => {
    const probe = new EC2Client({});
    try {
      const region = await probe.config.region();
      return region || undefined;
    } catch {
      return undefined;
    } finally {
      probe.destroy();
    }
  };

  return {
    async region(explicit) {
      if (explicit) return explicit;
      if (options.region) return options.region;
      defaultRegion ??= sdkRegion();
      const found = (await defaultRegion) ?? (process.env["AWS_DEFAULT_REGION"] || undefined);
      if (!found) {
        defaultRegion = undefined;
        throw new AwsRegionError();
      }
      return found;
    },
    ec2: (region) => cached(ec2, region, () => new EC2Client(config(region))),
    autoScaling: (region) => cached(autoScaling, region, () => new AutoScalingClient(config(region))),
    cloudWatch: (region) => cached(cloudWatch, region, () => new CloudWatchClient(config(region))),
    destroy() {
      for (const cache of [ec2, autoScaling, cloudWatch] as Map<string, { destroy(): void }>[]) {
        for (const client of cache.values()) client.destroy();
        cache.clear();
      }
    },
  };
}
