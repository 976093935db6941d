// CNI spec versions this plugin speaks, and comparison of version strings.

/** The versions a config may ask for; results are written in the same one. */
export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;

/** One of {@linkcode SUPPORTED_VERSIONS}. */
export type CniVersion = typeof SUPPORTED_VERSIONS[number];

/** The newest version we speak: used for errors before the config's version is known. */
export const CURRENT_VERSION: CniVersion = "1.1.0";

/** Whether `v` is exactly one of the supported versions (the reference skeleton's rule). */
export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === "string" && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compares dotted versions numerically: negative, zero or positive like a sort callback. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number), pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Whether version `v` is `min` or newer. */
export function versionAtLeast(v: string, min: string): boolean {
  return compareVersions(v, min) >= 0;
}
