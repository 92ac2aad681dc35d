/** The firedrill-agent version, sent in the Hello. */
export const AGENT_VERSION = "0.1.0";
