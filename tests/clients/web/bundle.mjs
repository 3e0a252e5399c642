// Bundles app.mjs (React, react-dom and the built @tidings/client) into
// <outdir>/bundle.js with the package's own esbuild and node_modules.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const pkg = fileURLToPath(new URL("../../../clients/js/package.json", import.meta.url));
const { build } = createRequire(pkg)("esbuild");
await build({
  entryPoints: [fileURLToPath(new URL("app.mjs", import.meta.url))],
  bundle: true,
  format: "esm",
  outfile: `${process.argv[2]}/bundle.js`,
  nodePaths: [fileURLToPath(new URL("../../../clients/js/node_modules", import.meta.url))],
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "error",
});
