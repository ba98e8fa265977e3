/**
 * What the port patches (backend-loopback, frontend-backend-port) and `local up --instances` share, in a
 * module that loads no compiler: the variable that moves MetaMCP's backend port, and how a release that
 * cannot move it says so in the manifest.
 */

/** The variable that moves the backend's port (the runtime's own name for it, passed to both children). */
export const BACKEND_PORT_VARIABLE = "METAMCP_BACKEND_PORT";

export const FRONTEND_BACKEND_PORT_PATCH_ID = "frontend-backend-port";

/** The frontend-backend-port patch's note for v2.0.0–v2.0.5 (their middleware goes through Next's rewrites). */
export const ORIGIN_FORM_NOTE =
  "this release's frontend checks sessions through Next's rewrites, whose backend port (12009) is fixed at build time: one instance per machine (`local up --instances 1`); on Databricks each instance has its own container, so nothing changes there";
