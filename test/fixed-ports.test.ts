/**
 * The one suite left on upstream's fixed ports (backend 12009, frontend 12008): the first-deploy rehearsal
 * runs the app from the app.yaml our deploy writes, inside the workspace emulator, as the platform would.
 * Every other suite that starts a MetaMCP-shaped tree picks free internal ports (METAMCP_BACKEND_PORT /
 * METAMCP_FRONTEND_PORT, the fake tree built for them) and runs beside `make local` or another MetaMCP.
 */
import "./databricks/first-deploy.suite.js";
