import { VARIABLES } from "./variables.js";

/** `.env.template`, generated from the variable table so the two can never drift. */
export function renderEnvTemplate(): string {
  const lines = [
    "# metamcp-databricks configuration. Copy to .env and edit; flags > environment > .env > defaults.",
    "# Generated from src/config/variables.ts (`metamcp-databricks config --template`). Empty = default.",
    "",
  ];
  for (const def of VARIABLES) {
    const dflt =
      typeof def.default === "string" ? def.default || "(empty)" : def.default ? "(derived)" : "(required)";
    lines.push(`# ${def.description} Default: ${dflt}`);
    lines.push(`${def.env}=`);
    lines.push("");
  }
  return lines.join("\n");
}
