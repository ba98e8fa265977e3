import { generate } from "selfsigned";

let cached: Promise<{ key: string; cert: string }> | undefined;

/** A self-signed certificate for 127.0.0.1 and localhost, made once per test process. */
export function localhostCertificate(): Promise<{ key: string; cert: string }> {
  cached ??= generate([{ name: "commonName", value: "localhost" }], {
    keySize: 2048,
    algorithm: "sha256",
    extensions: [
      {
        name: "subjectAltName",
        altNames: [
          { type: 2, value: "localhost" },
          { type: 7, ip: "127.0.0.1" },
        ],
      },
    ],
  }).then((p) => ({ key: p.private, cert: p.cert }));
  return cached;
}
