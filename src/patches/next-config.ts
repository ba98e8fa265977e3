import { Node, type ObjectLiteralExpression, type SourceFile } from "./ts-morph.js";

/**
 * MetaMCP's Next config, as every release has it (v2.0.0 … v2.5.x and main): `apps/frontend/next.config.js`,
 * an ES module, `const nextConfig = { output: "standalone", … }` and `export default nextConfig`. The patches
 * that set something in it (next-tracing-root, next-disk-cache) find the object the same way.
 */
export const NEXT_CONFIG_FILE = "apps/frontend/next.config.js";

export const KNOWN_NEXT_CONFIG_SHAPE =
  '`const nextConfig = { output: "standalone", … }` exported as `export default nextConfig`';

/** The `nextConfig` object literal with `output: "standalone"`, or undefined when the file has another shape. */
export function nextConfigObject(sf: SourceFile): ObjectLiteralExpression | undefined {
  const init = sf.getVariableDeclaration("nextConfig")?.getInitializer();
  if (!init || !Node.isObjectLiteralExpression(init)) return undefined;
  const output = init.getProperty("output");
  const value = output && Node.isPropertyAssignment(output) ? output.getInitializer() : undefined;
  if (!value || !Node.isStringLiteral(value) || value.getLiteralValue() !== "standalone") return undefined;
  const exported = sf.getExportAssignment((e) => !e.isExportEquals());
  return exported?.getExpression().getText() === "nextConfig" ? init : undefined;
}
