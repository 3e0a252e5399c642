// The core's budget: minified and gzipped, at most 6 KB.
import assert from "node:assert/strict";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

test("the core (dist/index.js and what it imports) is at most 6 KB min+gz", async () => {
  const result = await build({
    entryPoints: [new URL("../dist/index.js", import.meta.url).pathname],
    bundle: true,
    minify: true,
    format: "esm",
    write: false,
  });
  const size = gzipSync(result.outputFiles[0].contents, { level: 9 }).length;
  console.log(`core: ${size} bytes min+gz`);
  assert.ok(size <= 6 * 1024, `${size} bytes`);
});
