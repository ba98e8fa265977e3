import { expect, test } from "vitest";
import { logStreamUrl } from "../../src/databricks/logs.js";
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

test("the log stream is the app URL's WebSocket twin", () => {
  expect(logStreamUrl("https://myapp-123.cloud.databricksapps.com")).toBe(
    "wss://myapp-123.cloud.databricksapps.com/logz/stream",
  );
  expect(logStreamUrl("http://127.0.0.1:8000")).toBe("ws://127.0.0.1:8000/logz/stream");
});
