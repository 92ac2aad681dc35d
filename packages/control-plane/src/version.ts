/** The firedrill control plane version, sent to agents in Welcome. */
export const CONTROL_PLANE_VERSION = "0.1.0";
