// Which of the commands we exec are missing from PATH: checked by stat, without spawning.
// Used by the plugin's STATUS and the agent's start-up check.

/**
 * The names in `commands` that no directory of `path` (a PATH string) holds as a file.
 *
 * @example
 * missingTools(["nft", "iptables-save"], Deno.env.get("PATH") ?? ""); // [] on a healthy node
 */
export function missingTools(commands: readonly string[], path: string): string[] {
  const dirs = path.split(":").filter((d) => d !== "");
  return commands.filter((cmd) =>
    !dirs.some((dir) => {
      try {
        // statSync follows symlinks (iptables -> /etc/alternatives/...).
        const st = Deno.statSync(`${dir}/${cmd}`);
        return st.isFile && ((st.mode ?? 0o755) & 0o111) !== 0;
      } catch {
        return false;
      }
    })
  );
}
