import { createRequire } from "node:module";
import type * as TsMorph from "ts-morph";

/**
 * ts-morph (and the TypeScript compiler inside it, ~0.3 s to load) only when a patch actually parses
 * something: every other command of the CLI starts without it. Same names and types as the package.
 */
type TsMorphModule = typeof TsMorph;
let loaded: TsMorphModule | undefined;

function tsMorph(): TsMorphModule {
  loaded ??= createRequire(import.meta.url)("ts-morph") as TsMorphModule;
  return loaded;
}

function lazy<T extends object>(pick: (m: TsMorphModule) => T): T {
  return new Proxy({} as T, {
    get(_target, prop) {
      const real = pick(tsMorph());
      const value = Reflect.get(real, prop);
      return typeof value === "function" ? value.bind(real) : value;
    },
  });
}

export const Node: TsMorphModule["Node"] = lazy((m) => m.Node);
export type Node = TsMorph.Node;
export const SyntaxKind: TsMorphModule["SyntaxKind"] = lazy((m) => m.SyntaxKind);
export type SyntaxKind = TsMorph.SyntaxKind;
export const ts: TsMorphModule["ts"] = lazy((m) => m.ts);
export type TsDiagnostic = TsMorph.ts.Diagnostic;
export type {
  ArrowFunction,
  CallExpression,
  ImportDeclaration,
  ObjectLiteralExpression,
  SourceFile,
} from "ts-morph";

export function createProject(options: TsMorph.ProjectOptions): TsMorph.Project {
  return new (tsMorph().Project)(options);
}
