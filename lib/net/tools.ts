// Which of the commands we exec are missing from PATH: checked by stat, without spawning.

/**
 * The names in `commands` that no directory of `path` (a PATH string) holds as a file.
 *
 * @example
 * missingTools(["ip", "nsenter"], Deno.env.get("PATH") ?? ""); // [] on a healthy node
 */
export function missingTools(commands: readonly string[], path: string): string[] {
  const dirs = path.split(":").filter((d) => d !== "");
  return commands.filter((cmd) =>
    !dirs.some((dir) => {
      try {
        return Deno.statSync(`${dir}/${cmd}`).isFile;
      } catch {
        return false;
      }
    })
  );
}
