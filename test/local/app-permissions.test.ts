import { describe, expect, it } from "vitest";
import { appUsePolicy } from "../../src/local/platform/app-permissions.js";

const DEPLOYER = "local-user@example.com";

describe("who the stand-in Apps proxy lets through (APP_CAN_USE / APP_CAN_MANAGE)", () => {
  it("neither set: every local user, as before", () => {
    expect(appUsePolicy("", undefined, DEPLOYER).mayUse({ email: "anyone@example.com" })).toBe(true);
  });

  it("set: the listed users (any case), managers, service principals by application id, the deployer; nobody else", () => {
    const sp = "f37d18cd-98a8-4db5-8112-12dd0a6bfe38";
    const p = appUsePolicy("Ada@Example.com, data-users", `boss@example.com,${sp}`, DEPLOYER);
    expect(p.mayUse({ email: "ada@example.com" })).toBe(true);
    expect(p.mayUse({ email: "boss@example.com" })).toBe(true);
    expect(p.mayUse({ email: sp, id: sp })).toBe(true);
    expect(p.mayUse({ email: DEPLOYER })).toBe(true);
    // A group the stand-in does not know admits nobody; a similar name is not the listed one.
    expect(p.mayUse({ email: "data-users" })).toBe(false);
    expect(p.mayUse({ email: "eve@example.com" })).toBe(false);
    expect(p.mayUse({ email: "ada@example.com.evil" })).toBe(false);
    expect(p.mayUse({ email: sp.toUpperCase() })).toBe(false);
  });

  it("the group `users` is every workspace user", () => {
    expect(appUsePolicy("users", "", DEPLOYER).mayUse({ email: "eve@example.com" })).toBe(true);
  });
});
