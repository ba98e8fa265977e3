import { expect, test } from "vitest";
import { normalizeAppUrl } from "../../src/databricks/workspace.js";

test("the app URL gets https:// when the API returns a bare host, and loses trailing slashes", () => {
  expect(normalizeAppUrl("myapp-123.cloud.databricksapps.com")).toBe(
    "https://myapp-123.cloud.databricksapps.com",
  );
  expect(normalizeAppUrl("https://myapp-123.cloud.databricksapps.com/")).toBe(
    "https://myapp-123.cloud.databricksapps.com",
  );
  expect(normalizeAppUrl("http://127.0.0.1:8000")).toBe("http://127.0.0.1:8000");
});
