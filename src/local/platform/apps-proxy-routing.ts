import { createHash } from "node:crypto";

/**
 * Which app instance the stand-in Apps proxy sends a request to, when the app runs several (docs/scaling.md).
 * Databricks routes "every request from the same user ... to the same instance on a best-effort basis"
 * (docs: databricks-apps/horizontal-scaling): `sticky` does that, by a hash of who calls over the instances
 * in rotation now (a person moves when the rotation changes, as on a deploy); `spread` sends each request to
 * the next instance, to rehearse the affinity missing.
 */
export type InstanceRouting = "sticky" | "spread";

export interface InstanceRotation {
  /** The app ports of the instances in rotation, in order (a rolling restart takes one out, then back). */
  ports: number[];
  routing: InstanceRouting;
}

export function createInstancePicker(rotation: () => InstanceRotation) {
  let next = 0;
  return (who: string): number | undefined => {
    const { ports, routing } = rotation();
    if (ports.length === 0) return undefined;
    if (routing === "spread") return ports[next++ % ports.length];
    return ports[createHash("sha256").update(who).digest().readUInt32BE(0) % ports.length];
  };
}
