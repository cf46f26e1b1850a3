// Prints the README's configuration table from the zod schema's descriptions: `npx tsx scripts/config-table.ts`.
import { envSchema } from "../src/config/config.js";

const rows = Object.entries(envSchema.shape).map(([name, schema]) => {
  const json = (schema as { def: { defaultValue?: unknown } }).def;
  const def = "defaultValue" in json ? `\`${String(json.defaultValue)}\`` : "";
  return `| \`${name}\` | ${def} | ${schema.description ?? ""} |`;
});
console.log(["| variable | default | meaning |", "|---|---|---|", ...rows].join("\n"));
