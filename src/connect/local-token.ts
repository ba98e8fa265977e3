import { localUserToken } from "../local/user-token.js";

/**
 * A fresh user token for the local Apps proxy, minted by the running stand-in the way `databricks auth
 * token` gets one from a workspace (the stand-in's tokens expire like Databricks OAuth tokens).
 */
export async function mintLocalToken(
  stateDir: string,
  email?: string,
): Promise<{ token: string; expiresAt: number }> {
  const t = await localUserToken(stateDir, email ? { email } : {});
  return { token: t.token, expiresAt: t.expiresAt.getTime() };
}
