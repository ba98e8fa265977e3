import type { ToolServer } from "./kinds.js";

/**
 * What an admin grants the principal that calls a managed server (the app's service principal, named by its
 * application id) so the server answers it (docs/databricks-tools-design.md §1.2: Genie space CAN VIEW with
 * SELECT on its data and CAN USE on its warehouse [S15]; SQL CAN USE on a warehouse and the tables' privileges
 * [S4]; functions USE CATALOG, USE SCHEMA, EXECUTE; search USE CATALOG, USE SCHEMA, SELECT on the index;
 * external USE CONNECTION [S14]). SQL statements where Unity Catalog has them; `--` lines for what is granted
 * in the workspace's UI instead (a space's or a warehouse's permissions) or what the admin fills in.
 */
export function grantStatements(server: ToolServer, principal: string): string[] {
  const to = `TO \`${principal}\`;`;
  const q = (...names: string[]) => names.map((n) => `\`${n}\``).join(".");
  const [catalog = "", schema = "", leaf] = server.ids;
  const catalogAndSchema = [
    `GRANT USE CATALOG ON CATALOG ${q(catalog)} ${to}`,
    `GRANT USE SCHEMA ON SCHEMA ${q(catalog, schema)} ${to}`,
  ];
  switch (server.kind) {
    case "genie":
    case "genie-one":
      return [
        server.kind === "genie"
          ? `-- Genie space ${server.ids[0]}: CAN VIEW for ${principal} (the space's Share dialog)`
          : `-- each Genie space it should reach: CAN VIEW for ${principal} (the space's Share dialog)`,
        `-- and CAN USE on the space's SQL warehouse (the warehouse's Permissions), then SELECT on its tables:`,
        `GRANT SELECT ON TABLE <catalog>.<schema>.<table> ${to}`,
      ];
    case "sql":
      return [
        `-- CAN USE on the SQL warehouse it runs on (the warehouse's Permissions) for ${principal}, then what the queries read:`,
        `GRANT USE CATALOG ON CATALOG <catalog> ${to}`,
        `GRANT USE SCHEMA ON SCHEMA <catalog>.<schema> ${to}`,
        `GRANT SELECT ON TABLE <catalog>.<schema>.<table> ${to}`,
      ];
    case "functions":
      return [
        ...catalogAndSchema,
        leaf
          ? `GRANT EXECUTE ON FUNCTION ${q(catalog, schema, leaf)} ${to}`
          : `GRANT EXECUTE ON SCHEMA ${q(catalog, schema)} ${to}`,
      ];
    case "search":
      return [
        ...catalogAndSchema,
        leaf
          ? `GRANT SELECT ON TABLE ${q(catalog, schema, leaf)} ${to}`
          : `GRANT SELECT ON SCHEMA ${q(catalog, schema)} ${to}`,
      ];
    case "connection":
      return [`GRANT USE CONNECTION ON CONNECTION ${q(server.ids[0] ?? "")} ${to}`];
  }
}
