/**
 * Our in-app runtime: one self-contained ESM bundle emitted by `npm run build` (tsup.config.ts). The package
 * root and the overlay folder are prepare's (src/upstream/locations.ts): build reads prepare's output, never
 * the other way round.
 */
export const RUNTIME_BUNDLE_PATH = "dist/runtime/start.mjs";
