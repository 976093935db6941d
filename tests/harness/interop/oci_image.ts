// A tiny OCI image built from Debian's busybox-static, so containerd and podman need no registry:
// one layer holding /bin/busybox, its applet links and a page for `httpd` to serve.
import { run } from "../../../lib/process/run.ts";

/** The applets the suite's containers use. */
const APPLETS = ["sh", "sleep", "ping", "ip", "httpd", "wget", "nc", "cat", "echo", "ls", "true"];

/** What `httpd -h /www` serves: the hostPort check compares the body with this. */
export const POD_PAGE = "hello from an interop pod\n";

/** An image tarball on disk and the name it is imported under. */
export interface OciImage {
  /** OCI-layout tar that `ctr images import` and `podman load` both take. */
  readonly tar: string;
  /** Fully qualified reference, e.g. `docker.io/mci/busybox:latest`. */
  readonly ref: string;
}

async function sha256(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Writes an OCI-layout tarball for `ref` under `dir` whose default command is `cmd`.
 *
 * @example
 * const pause = await buildBusyboxImage(tmp, "docker.io/mci/pause:latest", ["/bin/sleep", "2147483647"]);
 */
export async function buildBusyboxImage(
  dir: string,
  ref: string,
  cmd: readonly string[],
): Promise<OciImage> {
  const name = ref.replace(/[^a-z0-9]+/g, "-");
  const rootfs = `${dir}/${name}-rootfs`;
  const layout = `${dir}/${name}-layout`;
  for (const d of ["bin", "tmp", "etc", "proc", "sys", "dev", "www"]) {
    await Deno.mkdir(`${rootfs}/${d}`, { recursive: true });
  }
  await Deno.copyFile("/bin/busybox", `${rootfs}/bin/busybox`);
  await Deno.chmod(`${rootfs}/bin/busybox`, 0o755);
  for (const applet of APPLETS) await Deno.symlink("busybox", `${rootfs}/bin/${applet}`);
  await Deno.writeTextFile(`${rootfs}/www/index.html`, POD_PAGE);
  await Deno.writeTextFile(`${rootfs}/etc/passwd`, "root:x:0:0:root:/:/bin/sh\n");

  // The diff id is the digest of the plain tar; the blob is its gzip (-n: no timestamp).
  const layerTar = `${dir}/${name}-layer.tar`;
  await run([
    "tar",
    "--numeric-owner",
    "--owner=0",
    "--group=0",
    "-C",
    rootfs,
    "-cf",
    layerTar,
    ".",
  ]);
  const plain = await Deno.readFile(layerTar);
  await run(["gzip", "-n", "-f", layerTar]);
  const layer = await Deno.readFile(`${layerTar}.gz`);

  await Deno.mkdir(`${layout}/blobs/sha256`, { recursive: true });
  const put = async (data: Uint8Array) => {
    const digest = await sha256(data);
    await Deno.writeFile(`${layout}/blobs/sha256/${digest}`, data);
    return { digest: `sha256:${digest}`, size: data.length };
  };
  const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  const layerBlob = await put(layer);
  const configBlob = await put(json({
    architecture: "amd64",
    os: "linux",
    config: { Cmd: cmd, Env: ["PATH=/bin"], WorkingDir: "/" },
    rootfs: { type: "layers", diff_ids: [`sha256:${await sha256(plain)}`] },
  }));
  const manifestBlob = await put(json({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...configBlob },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...layerBlob }],
  }));
  await Deno.writeTextFile(`${layout}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await Deno.writeTextFile(
    `${layout}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        ...manifestBlob,
        annotations: {
          "io.containerd.image.name": ref,
          "org.opencontainers.image.ref.name": ref.split(":").at(-1),
        },
      }],
    }),
  );
  const tar = `${dir}/${name}.oci.tar`;
  await run(["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", layout, "-cf", tar, "."]);
  return { tar, ref };
}
